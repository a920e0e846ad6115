"""Helpers for the hardening suites (test_crash.py, test_adversarial.py,
test_admin_api.py): killing the real deputy process, reading its database
read-only (SQLite file or PostgreSQL schema), timing, and a catalogue of
forged JWTs (RFC 8725 attacks).

Black box: deputy is driven only through its binary (conftest.Deputy) and
HTTP. JOSE is built with jwcrypto / hmac / cryptography, never deputy's code.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from jwcrypto import jwk

from conftest import Deputy, b64url, b64url_json, sign_compact, unb64url

BYE = "https://web.example/bye"


# --------------------------------------------------------------------------
# Process and database
# --------------------------------------------------------------------------


def deputy_pid(d: Deputy) -> int:
    """The pid of the real `deputy serve` process of `d` (conftest starts the
    binary directly, no shell). Cross-checked with /proc: the command line
    must name this installation's database and bind address, so we never
    signal anything else."""
    assert d.proc is not None and d.proc.poll() is None, "server not running"
    pid = d.proc.pid
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert str(d.database).encode() in argv, argv
    assert f"127.0.0.1:{d.port}".encode() in argv, argv
    assert b"serve" in argv, argv
    return pid


def kill9(d: Deputy) -> float:
    """SIGKILL the server (no shutdown hooks run); returns the kill time."""
    pid = deputy_pid(d)
    os.kill(pid, signal.SIGKILL)
    at = time.time()
    d.proc.wait(timeout=10)
    assert d.proc.returncode == -signal.SIGKILL, d.proc.returncode
    d.stop()  # only bookkeeping: the process is gone
    return at


def db_readonly(d: Deputy):
    """The installation's database, read-only (never written by tests): its
    SQLite file, or in PostgreSQL mode a read-only connection to its schema.
    Either way `execute(sql, params)` takes `?` placeholders and returns rows
    indexable by position and by column name."""
    if d.is_pg:
        return PgReadOnly(str(d.database))
    conn = sqlite3.connect(f"file:{d.database}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


class PgRow(tuple):
    """A PostgreSQL row like sqlite3.Row: row[0], row["column"], dict(row)."""

    def __new__(cls, names: list[str], values):
        row = super().__new__(cls, values)
        row._names = names
        return row

    def keys(self):
        return list(self._names)

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


class PgReadOnly:
    """A read-only psycopg connection with the sqlite3 calls the suites use."""

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        self.conn.execute("SET default_transaction_read_only = on")

    def execute(self, sql: str, params=()):
        cur = self.conn.cursor()
        cur.execute(sql.replace("?", "%s"), tuple(params))
        return _PgCursor(cur)

    def close(self):
        self.conn.close()


class _PgCursor:
    def __init__(self, cur):
        self.cur = cur
        self.names = [c.name for c in cur.description] if cur.description else []

    def fetchone(self):
        row = self.cur.fetchone()
        return None if row is None else PgRow(self.names, row)

    def fetchall(self):
        return [PgRow(self.names, r) for r in self.cur.fetchall()]


def integrity_problems(d: Deputy) -> list:
    """The database's own consistency check; [] when it is sound.

    SQLite: `PRAGMA integrity_check`. PostgreSQL: amcheck over the
    installation's schema — every heap (`verify_heapam`) and every B-tree
    index against its heap (`bt_index_check` with heapallindexed) — and
    every constraint validated."""
    if not d.is_pg:
        conn = db_readonly(d)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
        return [] if rows == ["ok"] else rows
    import psycopg

    with psycopg.connect(str(d.database), autocommit=True, connect_timeout=10) as conn:
        # A contrib extension of the cluster's (a superuser's test cluster).
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA public")
        problems = []
        tables = [r[0] for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind = 'r'").fetchall()]
        assert tables, "no tables in the schema"
        for t in tables:
            for row in conn.execute("SELECT * FROM public.verify_heapam(%s::regclass)", (t,)).fetchall():
                problems.append((t, row))
        indexes = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE c.relnamespace = current_schema()::regnamespace "
            "AND a.amname = 'btree' AND i.indisvalid").fetchall()
        assert indexes, "no indexes in the schema"
        for (ix,) in indexes:
            try:
                conn.execute("SELECT public.bt_index_check(%s::regclass, true)", (ix,))
            except psycopg.Error as e:
                problems.append((ix, str(e).strip()))
        for name, table in conn.execute(
                "SELECT conname, conrelid::regclass::text FROM pg_constraint "
                "WHERE connamespace = current_schema()::regnamespace AND NOT convalidated").fetchall():
            problems.append((table, f"constraint {name} not validated"))
        return problems


def sha256_b64url(s: str) -> str:
    """How deputy stores codes and refresh tokens: base64url(sha256), no padding."""
    return b64url(hashlib.sha256(s.encode("ascii")).digest())


# --------------------------------------------------------------------------
# Response records
# --------------------------------------------------------------------------


class Rec:
    """One request a load client made and what it got back."""

    __slots__ = ("op", "key", "client", "status", "body", "error", "t0", "t1", "extra")

    def __init__(self, op: str, key, client: str, extra=None):
        self.op, self.key, self.client, self.extra = op, key, client, extra
        self.status: int | None = None
        self.body: dict | None = None
        self.error: str | None = None
        self.t0 = time.time()
        self.t1: float | None = None

    def __repr__(self):
        return f"Rec({self.op} {self.client} {str(self.key)[:16]} -> {self.status} {self.error or ''} {str(self.body)[:120]})"


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[Rec] = []

    def call(self, op: str, key, client: str, fn: Callable[[], requests.Response], extra=None) -> Rec:
        rec = Rec(op, key, client, extra)
        try:
            r = fn()
            rec.status = r.status_code
            try:
                rec.body = r.json()
            except ValueError:
                rec.body = {"_text": r.text[:300]}
        except requests.RequestException as e:
            rec.error = type(e).__name__
        rec.t1 = time.time()
        with self.lock:
            self.items.append(rec)
        return rec

    def all(self) -> list[Rec]:
        with self.lock:
            return list(self.items)


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def interleaved_medians(fa: Callable[[], object], fb: Callable[[], object], n: int = 20) -> tuple[float, float]:
    """Median durations of fa and fb, interleaved so drift hits both alike."""
    ta, tb = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


# --------------------------------------------------------------------------
# Forged JWTs (RFC 8725 §2 threats, RFC 7515 / 7519 processing rules)
# --------------------------------------------------------------------------

_ATTACKER: dict = {}


def attacker_keys() -> dict:
    """The attacker's own keys (made once per test process)."""
    if not _ATTACKER:
        _ATTACKER["ec"] = jwk.JWK.generate(kty="EC", crv="P-256", kid="attacker-ec")
        _ATTACKER["ec384"] = jwk.JWK.generate(kty="EC", crv="P-384", kid="attacker-ec384")
        _ATTACKER["rsa"] = jwk.JWK.generate(kty="RSA", size=2048, kid="attacker-rsa")
        _ATTACKER["cert_der"] = _self_signed_der(_ATTACKER["ec"])
    return _ATTACKER


def _self_signed_der(key: jwk.JWK) -> bytes:
    priv = serialization.load_pem_private_key(key.export_to_pem(private_key=True, password=None), None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(priv.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(priv, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def sign_hmac(header: dict, claims: dict, secret: bytes, alg: str) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    sig = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(sig)}"


def public_pem(public_jwk: dict) -> bytes:
    return jwk.JWK(**public_jwk).export_to_pem(private_key=False)


def flip_signature_byte(token: str, index: int = 5) -> str:
    h, p, s = token.split(".")
    raw = bytearray(unb64url(s))
    raw[index % len(raw)] ^= 0x01
    return f"{h}.{p}.{b64url(bytes(raw))}"


NESTED = "[" * 10000 + "]" * 10000


class Target:
    """What a forgery is built from, for one place deputy accepts a JWT.

    header     the genuine header (alg, typ, kid)
    claims()   claims that would be accepted if correctly signed (a fresh jti
               each call for client assertions)
    genuine()  a genuinely valid token (the positive control)
    real_key   the legitimate signer's private key when the test holds it
               (a client's assertion key), else None (deputy's own tokens)
    public     the verifier's public JWK (dict): the HMAC-confusion secret
    local      a LocalHTTP that jku / x5u point at (must get no request)"""

    def __init__(self, header: dict, claims: Callable[[], dict], genuine: Callable[[], str],
                 public: dict, local, real_key: jwk.JWK | None = None):
        self.header, self.claims, self.genuine = header, claims, genuine
        self.public, self.local, self.real_key = public, local, real_key


def forgeries(t: Target) -> list[tuple[str, str]]:
    """(name, token) pairs: every one must be refused where it is presented."""
    att = attacker_keys()
    ec, ec384, rsa = att["ec"], att["ec384"], att["rsa"]
    H, C, real = dict(t.header), t.claims, t.real_key
    kid = H.get("kid")
    out: list[tuple[str, str]] = []

    def add(name, token):
        out.append((name, token))

    def genuine_parts():
        return t.genuine().split(".")

    def reheader(new_header: dict) -> str:
        """A changed header over the genuine payload and signature (what an
        attacker without the key can do to deputy's own tokens)."""
        _, p, s = genuine_parts()
        return f"{b64url_json(new_header)}.{p}.{s}"

    def signed_by_real_or_reheader(new_header: dict, alg: str | None = None) -> str:
        if real is not None:
            return sign_compact(new_header, C(), real, alg=alg or H["alg"])
        return reheader(new_header)

    # RFC 8725 §2.1 / §3.1: "none" in any spelling, with or without a signature.
    for alg in ("none", "None", "NONE", "nOnE"):
        add(f"alg-{alg}", sign_compact({**H, "alg": alg}, C(), None, alg="none"))
    g_h, g_p, g_s = genuine_parts()
    add("alg-none-keeping-signature", f"{b64url_json({**H, 'alg': 'none'})}.{g_p}.{g_s}")

    # RFC 8725 §2.1 / §3.1: HMAC keyed with the public key (JWK JSON and PEM).
    pem = public_pem(t.public)
    secrets_ = {
        "jwk-json": json.dumps(t.public).encode(),
        "jwk-json-compact": json.dumps(t.public, separators=(",", ":"), sort_keys=True).encode(),
        "pem": pem,
        "pem-stripped": pem.strip(),
    }
    for alg in ("HS256", "HS384", "HS512"):
        for sname, secret in secrets_.items():
            add(f"{alg}-keyed-with-public-{sname}", sign_hmac({**H, "alg": alg}, C(), secret, alg))

    # RFC 8725 §3.1: algorithm confusion: the header names another algorithm.
    add("RS256-header-over-EC-signature", signed_by_real_or_reheader({**H, "alg": "RS256"}, "ES256"))
    add("ES384-header-over-ES256-signature", signed_by_real_or_reheader({**H, "alg": "ES384"}, "ES256"))
    add("PS256-header-over-EC-signature", signed_by_real_or_reheader({**H, "alg": "PS256"}, "ES256"))
    add("ES384-own-P384-key", sign_compact({**H, "alg": "ES384"}, C(), ec384))
    add("RS256-own-RSA-key", sign_compact({**H, "alg": "RS256"}, C(), rsa))

    # RFC 7515 §4.1.4: unknown and injected `kid` values.
    add("unknown-kid", signed_by_real_or_reheader({**H, "kid": "no-such-kid-" + uuid.uuid4().hex[:6]}))
    add("kid-path-traversal-HS256-empty-key",
        sign_hmac({**H, "alg": "HS256", "kid": "../../../dev/null"}, C(), b"", "HS256"))
    for name, k in (("path-traversal", "../../../dev/null"), ("sql-or", "' OR '1'='1"),
                    ("sql-drop", '"; DROP TABLE tokens;--')):
        add(f"kid-{name}-own-key", sign_compact({**H, "kid": k}, C(), ec))
        if real is not None:
            add(f"kid-{name}-real-key", sign_compact({**H, "kid": k}, C(), real))

    # RFC 8725 §3.10 / RFC 7515 §4.1.2, §4.1.5: remote key URLs are never fetched.
    add("jku-own-key", sign_compact({**H, "jku": t.local.url("/jku.json"), "kid": ec.key_id}, C(), ec))
    add("jku-genuine-kid", sign_compact({**H, "jku": t.local.url("/jku2.json")}, C(), ec))
    add("x5u-own-key", sign_compact({**H, "x5u": t.local.url("/x5u.pem"), "kid": ec.key_id}, C(), ec))
    # RFC 7515 §4.1.3, §4.1.6: keys embedded by the sender are not trusted.
    add("embedded-jwk", sign_compact({**H, "jwk": ec.export_public(as_dict=True), "kid": ec.key_id}, C(), ec))
    add("embedded-jwk-real-kid", sign_compact({**H, "jwk": ec.export_public(as_dict=True)}, C(), ec))
    add("embedded-x5c", sign_compact({**H, "x5c": [base64.b64encode(att["cert_der"]).decode()]}, C(), ec))

    # RFC 7515 §4.1.11: crit must not list registered names; unknown extensions are fatal.
    add("crit-exp", signed_by_real_or_reheader({**H, "crit": ["exp"]}))
    add("crit-unknown-extension", signed_by_real_or_reheader({**H, "crit": ["urn:x:ext"], "urn:x:ext": True}))

    # RFC 7515 §5.2: a bad signature.
    add("signature-one-byte-flipped", flip_signature_byte(t.genuine()))
    g_h, g_p, g_s = genuine_parts()
    add("signature-truncated", f"{g_h}.{g_p}.{g_s[:-8]}")
    add("signature-empty", f"{g_h}.{g_p}.")
    # RFC 7515 §2: base64url without padding, URL-safe alphabet only; the
    # same signature bytes in another encoding are not the same JWS.
    g_h, g_p, g_s = genuine_parts()
    add("signature-base64-padded", f"{g_h}.{g_p}.{g_s}" + "=" * (-len(g_s) % 4 or 4))
    g_h, g_p, g_s = genuine_parts()
    std = g_s.replace("-", "+").replace("_", "/")
    if std != g_s:
        add("signature-standard-base64-alphabet", f"{g_h}.{g_p}.{std}")

    # RFC 8725 §3.8 / RFC 7519 §4.1.1: another issuer.
    add("foreign-key-deputy-like-claims", sign_compact({**H, "kid": ec.key_id}, C(), ec))
    add("foreign-key-genuine-kid", sign_compact(H, C(), ec))
    other_iss = {**C(), "iss": "https://evil.example"}
    add("other-iss", sign_compact(H, other_iss, real) if real is not None else sign_compact(H, other_iss, ec))

    # RFC 7519 §4.1.4 / §4.1.5: expired, not yet valid.
    now = int(time.time())
    if real is not None:
        add("expired", sign_compact(H, {**C(), "iat": now - 1200, "exp": now - 600}, real))
        add("nbf-in-future", sign_compact(H, {**C(), "nbf": now + 600}, real))
    else:
        add("expired-own-key", sign_compact(H, {**C(), "iat": now - 1200, "exp": now - 600}, ec))
        add("nbf-in-future-own-key", sign_compact(H, {**C(), "nbf": now + 600}, ec))

    # RFC 7519 §7.2 step 1 / RFC 7515 §7.2: JWS JSON serialization is not a JWT.
    g_h, g_p, g_s = genuine_parts()
    add("jws-json-flattened", json.dumps({"protected": g_h, "payload": g_p, "signature": g_s}))
    g_h, g_p, g_s = genuine_parts()
    add("jws-json-general", json.dumps({"payload": g_p, "signatures": [{"protected": g_h, "signature": g_s}]}))

    # RFC 7515 §2 / §7.1: three parts that are not base64url.
    g_h, g_p, g_s = genuine_parts()
    add("base64-invalid-chars", f"{g_h[:-2]}!*.{g_p}.{g_s}")
    add("base64-garbage", "!!!!.@@@@.####")
    add("base64-not-json", f"{b64url(b'not json')}.{b64url(b'also not')}.{b64url(b'sig')}")
    add("two-parts", f"{g_h}.{g_p}")
    add("four-parts", f"{g_h}.{g_p}.{g_s}.{g_s}")
    add("header-not-an-object", f"{b64url(b'[]')}.{g_p}.{g_s}")

    # Deeply nested JSON (10 000 arrays): refused, no stack exhaustion.
    add("nested-arrays-header", f"{b64url(NESTED.encode())}.{g_p}.{g_s}")
    add("nested-arrays-payload", f"{g_h}.{b64url(NESTED.encode())}.{g_s}")
    if real is not None:
        add("nested-arrays-in-signed-claim", _signed_raw(H, _claims_with_raw(C(), NESTED), real))
    else:
        add("nested-arrays-in-claim-own-key", _signed_raw(H, _claims_with_raw(C(), NESTED), ec))
    return out


def _claims_with_raw(claims: dict, raw_json: str) -> bytes:
    """Claims JSON with a member "x" whose value is `raw_json` verbatim
    (json.dumps cannot build 10 000 levels)."""
    base = json.dumps(claims, separators=(",", ":"))
    return (base[:-1] + ',"x":' + raw_json + "}").encode()


def _signed_raw(header: dict, payload: bytes, key: jwk.JWK) -> str:
    return sign_compact(header, payload, key, alg=header["alg"])
