"""Shared machinery for the deputy black-box conformance suite.

Everything here talks to deputy only through its CLI binary and over HTTP.
Nothing from deputy's own source is imported or reused.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from jwcrypto import jwa, jwk

REPO = Path(__file__).resolve().parent.parent
DEPUTY_BIN = os.environ.get("DEPUTY_BIN") or str(REPO / "target" / "debug" / "deputy")

# PostgreSQL mode: DEPUTY_CONFORMANCE_POSTGRES=postgres://user@host:port/db
# runs every Deputy on its own schema of that database (see Deputy).
PG_BASE = os.environ.get("DEPUTY_CONFORMANCE_POSTGRES") or None

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NO_AUTH_FAILURE_LIMIT = {"DEPUTY_AUTH_FAILURE_LIMIT": "0"}
FORM = "application/x-www-form-urlencoded"

# Every running server, so a failing test can show their logs.
_RUNNING: list["Deputy"] = []


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token: str) -> tuple[dict, dict]:
    """Decode (without verifying) a compact JWS: (header, claims)."""
    h, p, _ = token.split(".")
    return json.loads(unb64url(h)), json.loads(unb64url(p))


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment without any DEPUTY_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPUTY_")}
    env["NO_COLOR"] = "1"
    env.pop("RUST_BACKTRACE", None)
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------
# PostgreSQL mode
# --------------------------------------------------------------------------


def pg_mode() -> bool:
    return PG_BASE is not None


def pg_schema_url(base: str, schema: str) -> str:
    """`base` with its search_path set to `schema`: the libpq `options`
    parameter, percent-encoded (`%20` for the space: a `+` is not decoded to
    one in a connection URI)."""
    assert schema.replace("_", "").isalnum() and schema.islower(), schema
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-c%20search_path%3D{schema}"


def psql(url: str, sql: str, timeout: float = 60) -> str:
    """Run `sql` with psql against `url`; its unaligned, tuples-only output."""
    r = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       capture_output=True, text=True, timeout=timeout, env=clean_env())
    if r.returncode != 0:
        raise AssertionError(f"psql {sql!r} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def new_pg_schema(base: str | None = None, prefix: str = "conf") -> str:
    """A fresh, empty schema in the PostgreSQL database `base`; its name."""
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    psql(base or PG_BASE, f"CREATE SCHEMA {schema}")
    return schema


# The key-encryption-key files live outside the installations' directories
# (some tests check a directory holds nothing deputy did not write).
_KEK_DIR: Path | None = None


def write_kek() -> Path:
    """A key-encryption key for deputy's sealed signing keys: 32 random
    bytes, base64 (what `openssl rand -base64 32` writes), mode 0600."""
    global _KEK_DIR
    if _KEK_DIR is None:
        _KEK_DIR = Path(tempfile.mkdtemp(prefix="deputy-kek-"))
        atexit.register(shutil.rmtree, _KEK_DIR, True)
    path = _KEK_DIR / f"kek-{uuid.uuid4().hex[:12]}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n")
    return path


def sqlite_only(what: str):
    """Skip the calling test in PostgreSQL mode: it is about SQLite files."""
    if pg_mode():
        pytest.skip(f"SQLite file: {what}")


# --------------------------------------------------------------------------
# Keys and client assertions
# --------------------------------------------------------------------------


class ClientKey:
    """A client's key pair, made at test time with jwcrypto."""

    def __init__(self, alg: str = "ES256", kid: str | None = None):
        self.alg = alg
        self.kid = kid if kid is not None else f"k-{uuid.uuid4().hex[:8]}"
        params = {"kid": self.kid} if self.kid else {}
        if alg == "ES256":
            self.jwk = jwk.JWK.generate(kty="EC", crv="P-256", **params)
        elif alg in ("RS256", "PS256"):
            self.jwk = jwk.JWK.generate(kty="RSA", size=2048, **params)
        elif alg == "EdDSA":
            self.jwk = jwk.JWK.generate(kty="OKP", crv="Ed25519", **params)
        else:
            raise ValueError(alg)

    def public_dict(self) -> dict:
        return self.jwk.export_public(as_dict=True)

    def jwks(self) -> dict:
        return {"keys": [self.public_dict()]}

    def write_jwks(self, path: Path, *others: "ClientKey") -> Path:
        path.write_text(json.dumps({"keys": [self.public_dict()] + [o.public_dict() for o in others]}))
        return path

    def pem_private(self) -> bytes:
        return self.jwk.export_to_pem(private_key=True, password=None)


def sign_compact(header: dict, claims: dict | str | bytes, key: jwk.JWK | None, alg: str | None = None) -> str:
    """Build a compact JWS by hand (so any header can be set), signed with
    jwcrypto's JWA primitives. `alg` defaults to header['alg']."""
    alg = alg or header["alg"]
    if isinstance(claims, dict):
        payload = b64url_json(claims)
    elif isinstance(claims, bytes):
        payload = b64url(claims)
    else:
        payload = claims
    signing_input = f"{b64url_json(header)}.{payload}".encode("ascii")
    if alg == "none" or key is None:
        sig = b""
    else:
        sig = jwa.JWA.signing_alg(alg).sign(key, signing_input)
    return f"{signing_input.decode('ascii')}.{b64url(sig)}"


def assertion_claims(client_id: str, aud, now: int | None = None, **over) -> dict:
    """RFC 7523 §3 claims for a client assertion; `over` replaces or, with
    value `None`, removes claims."""
    now = int(time.time()) if now is None else now
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
    }
    for k, v in over.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    return claims


def make_assertion(key: ClientKey, client_id: str, aud, header_extra: dict | None = None,
                   header_drop: tuple = (), **claims_over) -> str:
    header = {"alg": key.alg, "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    if header_extra:
        header.update(header_extra)
    for h in header_drop:
        header.pop(h, None)
    return sign_compact(header, assertion_claims(client_id, aud, **claims_over), key.jwk)


def assertion_form(assertion: str, **extra) -> dict:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }
    form.update(extra)
    return form


# --------------------------------------------------------------------------
# Response checks
# --------------------------------------------------------------------------


def assert_oauth_error(resp: requests.Response, status: int, code: str):
    """RFC 6749 §5.2: exact status, JSON body with the exact `error`, no-store."""
    assert resp.status_code == status, f"expected {status} {code}, got {resp.status_code}: {resp.text[:500]}"
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip().lower() == "application/json", ctype
    body = resp.json()
    assert body.get("error") == code, body
    assert "access_token" not in body
    if "error_description" in body:
        # RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
        assert all(c == " " or c == "!" or 0x23 <= ord(c) <= 0x5B or 0x5D <= ord(c) <= 0x7E
                   for c in body["error_description"]), body["error_description"]
    assert "no-store" in resp.headers.get("Cache-Control", "").lower()
    return body


def assert_token_ok(resp: requests.Response) -> dict:
    assert resp.status_code == 200, f"expected 200, got {resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert isinstance(body.get("access_token"), str) and body["access_token"].count(".") == 2, body
    assert body.get("token_type") == "Bearer", body
    assert resp.headers.get("Cache-Control", "").lower() == "no-store"
    return body


# --------------------------------------------------------------------------
# A deputy instance: CLI + server lifecycle
# --------------------------------------------------------------------------


class CliError(AssertionError):
    pass


class Deputy:
    """One deputy installation: a temp dir with its database and keys dir,
    the settings (as DEPUTY_* env) shared by its CLI calls and its server.

    In PostgreSQL mode (DEPUTY_CONFORMANCE_POSTGRES set, or `pg_base` given)
    the database is a schema of its own in that PostgreSQL database (made
    now, kept across restarts) and `database` is its URL; the installation
    has its own key-encryption key (`kek_file`, given to every CLI call and
    the server as DEPUTY_KEY_ENCRYPTION_KEY_FILE). `schema` and `kek_file`
    may be passed to share them with another installation. `sqlite=True`
    makes a SQLite installation whatever the mode (e.g. the source of a
    `store copy`)."""

    def __init__(self, root: Path, settings: dict[str, str] | None = None, port: int | None = None, *,
                 pg_base: str | None = None, schema: str | None = None, kek_file: Path | None = None,
                 issuer: str | None = None, sqlite: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pg_base = "" if sqlite else (pg_base or PG_BASE)
        self.keys_dir = self.root / "keys"
        self.schema: str | None = None
        self.kek_file: Path | None = None
        if self.pg_base:
            self.schema = schema or new_pg_schema(self.pg_base)
            self.database = pg_schema_url(self.pg_base, self.schema)
            self.kek_file = kek_file or write_kek()
        else:
            self.database = self.root / "deputy.db"
        # The suite sends thousands of deliberately failing client
        # authentications from 127.0.0.1, so deputy's budget for them is off
        # unless a test sets it; a value of None leaves deputy's default.
        merged = {**NO_AUTH_FAILURE_LIMIT, **(settings or {})}
        self.settings = {k: v for k, v in merged.items() if v is not None}
        self.settings.update(self.engine_env())
        for k in self.settings:
            assert k.startswith("DEPUTY_")
        self.port = port or free_port()
        # Where this server listens; the issuer (its public address) is the
        # same unless the installation sits behind a proxy.
        self.direct = f"http://127.0.0.1:{self.port}"
        self.issuer = issuer or self.direct
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "server.log"
        self._log = None
        self.session = requests.Session()

    @property
    def is_pg(self) -> bool:
        return self.schema is not None

    def engine_env(self) -> dict[str, str]:
        """The settings the database engine needs besides `--database`: the
        key-encryption key with PostgreSQL, nothing with SQLite."""
        if self.kek_file is None:
            return {}
        return {"DEPUTY_KEY_ENCRYPTION_KEY_FILE": str(self.kek_file)}

    def sql(self, query: str) -> str:
        """PostgreSQL mode: run `query` in this installation's schema (psql,
        unaligned, tuples only) and return its output."""
        assert self.is_pg, "sql() is for PostgreSQL mode"
        return psql(str(self.database), query)

    def stored_bytes(self) -> bytes:
        """Everything the installation's database holds at rest: the SQLite
        file with its journal files, or in PostgreSQL mode a data-only
        pg_dump of its schema."""
        if not self.is_pg:
            return b"".join(p.read_bytes() for p in self.root.iterdir() if p.name.startswith("deputy.db"))
        r = subprocess.run(["pg_dump", "--data-only", "--schema", self.schema, "-d", self.pg_base],
                           capture_output=True, timeout=60, env=clean_env())
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert b"COPY " in r.stdout, "pg_dump found no tables"
        return r.stdout

    def pg_tables(self) -> list[str]:
        """PostgreSQL mode: the tables in this installation's schema."""
        out = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
        return out.split() if out else []

    def pg_count(self, table: str) -> int:
        """PostgreSQL mode: rows in `table`, 0 when it does not exist yet."""
        if table not in self.pg_tables():
            return 0
        return int(self.sql(f"SELECT count(*) FROM {table}"))

    # ---- URLs
    def url(self, path: str) -> str:
        return self.issuer + path

    @property
    def token_endpoint(self) -> str:
        return self.url("/token")

    # ---- CLI
    def run(self, *args: str, input: str | None = None, env_extra: dict | None = None,
            global_opts: bool = True) -> subprocess.CompletedProcess:
        cmd = [DEPUTY_BIN]
        if global_opts:
            cmd += ["--database", str(self.database), "--keys-dir", str(self.keys_dir)]
        cmd += list(args)
        env = clean_env({**self.settings, **(env_extra or {})})
        return subprocess.run(cmd, cwd=self.root, env=env, input=input, capture_output=True,
                              text=True, timeout=60)

    def cli(self, *args: str, input: str | None = None, env_extra: dict | None = None):
        """Run a CLI command that must succeed; returns its JSON output."""
        r = self.run(*args, input=input, env_extra=env_extra)
        if r.returncode != 0:
            raise CliError(f"deputy {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return json.loads(r.stdout)

    def add_client(self, client_id: str, auth: str, kind: str = "service", *,
                   key: ClientKey | None = None, keys: list[ClientKey] | None = None,
                   jwks_uri: str | None = None, alg: str | None = None,
                   scopes=("read", "write"), audiences=("https://api.example/",),
                   grants=(), redirect_uris=(), env_extra: dict | None = None) -> dict:
        args = ["client", "add", "--id", client_id, "--kind", kind, "--auth", auth]
        keys = list(keys or ([] if key is None else [key]))
        if keys:
            path = self.root / f"jwks-{client_id.replace('/', '_').replace(':', '_')}-{uuid.uuid4().hex[:6]}.json"
            path.write_text(json.dumps({"keys": [k.public_dict() for k in keys]}))
            args += ["--jwks-file", str(path)]
            alg = alg or keys[0].alg
        if jwks_uri:
            args += ["--jwks-uri", jwks_uri]
        if alg:
            args += ["--alg", alg]
        for s in scopes:
            args += ["--scope", s]
        for a in audiences:
            args += ["--audience", a]
        for g in grants:
            args += ["--grant", g]
        for u in redirect_uris:
            args += ["--redirect-uri", u]
        return self.cli(*args, env_extra=env_extra)

    # ---- server
    def start(self, timeout: float = 10.0):
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self):
        """Start `deputy serve` without waiting for it (see wait_ready)."""
        assert self.proc is None, "already running"
        self._log = open(self.log_path, "ab")
        cmd = [DEPUTY_BIN, "--database", str(self.database), "--keys-dir", str(self.keys_dir),
               "serve", "--issuer", self.issuer, "--bind", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=clean_env(self.settings),
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        _RUNNING.append(self)
        return self

    def wait_ready(self, timeout: float = 10.0):
        """Wait until the spawned server answers /healthz with 200."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._cleanup()
                raise RuntimeError(f"deputy serve exited with {rc}:\n{self.log_tail()}")
            try:
                r = requests.get(self.direct + "/healthz", timeout=0.5)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"deputy did not answer /healthz within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._cleanup()

    def _cleanup(self):
        if self in _RUNNING:
            _RUNNING.remove(self)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        self.session.close()
        self.session = requests.Session()

    def restart(self):
        """Stop and start again on the same port, database and keys dir."""
        self.stop()
        self.start()
        return self

    def log_tail(self, n: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ---- HTTP
    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.get(self.url(path), **kw)

    def token(self, data=None, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.post(self.token_endpoint, data=data, **kw)

    def jwks(self) -> dict:
        r = self.get("/jwks")
        assert r.status_code == 200
        return r.json()


def basic_auth(client_id: str, secret: str) -> dict:
    """RFC 6749 §2.3.1: urlencode id and secret, then HTTP Basic."""
    from urllib.parse import quote_plus

    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode("utf-8")
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


# --------------------------------------------------------------------------
# A tiny HTTP server for jwks_uri / jku / x5u tests
# --------------------------------------------------------------------------


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, run as a context
    manager; subclasses pass their request handler to `_serve`."""

    default_path = "/"

    def _serve(self, handler) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port}{path or self.default_path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def reply(handler: BaseHTTPRequestHandler, content_type: str, body: bytes) -> None:
    """A 200 with `body`, from inside a request handler."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class LocalHTTP(LoopbackServer):
    """Serves a mutable JSON body at any path and records every request."""

    default_path = "/jwks"

    def __init__(self, body: dict | None = None):
        self.body = body if body is not None else {"keys": []}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with outer.lock:
                    outer.requests.append(self.path)
                    data = json.dumps(outer.body).encode()
                reply(self, "application/json", data)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *a):
                pass

        self._serve(Handler)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


# --------------------------------------------------------------------------
# Fixtures and hooks
# --------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "engine_independent: checks only deputy's HTTP layer or outbound fetcher (no state in the "
        "database decides the outcome); run on SQLite only, to keep the PostgreSQL run short",
    )
    if not Path(DEPUTY_BIN).is_file():
        raise pytest.UsageError(f"deputy binary not found at {DEPUTY_BIN} (set DEPUTY_BIN or run cargo build)")


def pytest_collection_modifyitems(config, items):
    if PG_BASE is None:
        return
    skip = pytest.mark.skip(reason="engine-independent (HTTP layer / outbound fetcher): run on SQLite only")
    for item in items:
        if item.get_closest_marker("engine_independent"):
            item.add_marker(skip)


@pytest.fixture
def new_deputy(tmp_path, request):
    """Factory for fresh, not yet started deputy installations; all are
    stopped at the end of the test."""
    made: list[Deputy] = []
    request.node._deputies = made

    def make(settings: dict[str, str] | None = None, name: str = "deputy", sqlite: bool = False) -> Deputy:
        d = Deputy(tmp_path / f"{name}-{len(made)}", settings, sqlite=sqlite)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        # Show the logs of the servers this test used.
        used: list[Deputy] = list(getattr(item, "_deputies", []))
        for v in getattr(item, "funcargs", {}).values():
            for x in (v if isinstance(v, (tuple, list)) else (v,)):
                if isinstance(x, Deputy):
                    used.append(x)
        for d in used:
            if d.log_path.exists():
                rep.sections.append((f"deputy server log ({d.root.name})", d.log_tail(3000)))


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
