"""`deputy store copy --from FILE --to URL`: moving a SQLite deployment up to
PostgreSQL, black box.

A real deployment is built on SQLite with the CLI and real requests (a
person signed in with a refresh token, a token exchange, a revocation, a
rotated key, audit events), stopped, copied, and started again on
PostgreSQL with the same issuer: everything issued before the move must
work after it exactly as it did, and a second copy must be refused without
writing anything.

The tests that need PostgreSQL run when DEPUTY_CONFORMANCE_POSTGRES names a
database (e.g. `scripts/pg-cluster start DIR` prints one); each gets a fresh
schema made with psql. The source-side refusals need no PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import Deputy, assert_token_ok, basic_auth, jwt_parts
from flows import (add_client, add_user, allow_delegation, claims, exchange, introspect_json, refresh,
                   revoke, settings, sign_in, verify_jwcrypto)

PG_BASE = os.environ.get("DEPUTY_CONFORMANCE_POSTGRES", "")
needs_postgres = pytest.mark.skipif(
    not PG_BASE,
    reason="DEPUTY_CONFORMANCE_POSTGRES is not set (a PostgreSQL URL, e.g. from scripts/pg-cluster start DIR)")
# Never connected to: the source-side refusals come before any connection.
NOWHERE = "postgres://nobody:hunter2@127.0.0.1:9/none"

PW = "correct horse battery staple"
SCOPE = "openid notes:read notes:write"
NOTES = "https://notes.example"
API = "https://api.example"
AGENT = "agent-x"
SVC = "svc"
# Long enough for the grace retry to span stopping, copying and starting;
# rotated keys sign after 1 s.
SQLITE_SETTINGS = settings(DEPUTY_REFRESH_GRACE="120", DEPUTY_KEY_PREPUBLISH="1", DEPUTY_JWKS_MAX_AGE="0")


def psql() -> str:
    found = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)
    if not found:
        pytest.fail("psql not found (Debian's postgresql-client has it)")
    return str(found)


def fresh_schema(tag: str) -> str:
    """A new, empty schema in the DEPUTY_CONFORMANCE_POSTGRES database, and
    the URL that makes it the search path (`options=-c search_path=...`,
    percent-encoded: a `+` for the space is not decoded)."""
    name = f"copy_{tag}_{secrets.token_hex(4)}"
    r = subprocess.run([psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", PG_BASE, "-c", f"CREATE SCHEMA {name}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    sep = "&" if "?" in PG_BASE else "?"
    return f"{PG_BASE}{sep}options=-c%20search_path%3D{name}"


def write_kek(path: Path) -> Path:
    path.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path


def copy(d: Deputy, to: str, kek: Path | None, source: Path | str | None = None):
    """`deputy store copy` with `d`'s keys dir as the source's keys."""
    args = ["store", "copy", "--from", str(source or d.database), "--to", to]
    if kek is not None:
        args += ["--key-encryption-key-file", str(kek)]
    return d.run(*args)


def refused(r: subprocess.CompletedProcess) -> str:
    """A refusal: exit 1, nothing on stdout, one `deputy: error:` line."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deputy: error: "), r.stderr
    return lines[0]


def wait_for(pred, timeout=8.0, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def audit(d: Deputy) -> list[dict]:
    return d.cli("audit", "--limit", "1000")


# ---------------------------------------------------------------- refusals before any connection


def test_the_source_must_be_a_current_stopped_sqlite_deployment(new_deputy, tmp_path):
    """A URL, a missing file, a file that is not a database, a database of an
    older schema (migrate first), a missing key-encryption key and a
    database a server still has open are each refused with one line, before
    PostgreSQL is contacted, and leave the source as it was."""
    d = new_deputy(settings(), sqlite=True)
    add_user(d, "alice", PW)
    kek = write_kek(tmp_path / "kek")

    line = refused(copy(d, NOWHERE, kek, source=NOWHERE))
    assert "--from must be the SQLite database file, not a URL" in line
    assert "hunter2" not in line
    assert "no such file" in refused(copy(d, NOWHERE, kek, source=tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is no database" * 100)
    assert "is not a SQLite database" in refused(copy(d, NOWHERE, kek, source=junk))
    assert "--to must be a postgres:// or postgresql:// URL" in refused(copy(d, str(tmp_path / "x.db"), kek))
    assert "--key-encryption-key-file" in refused(copy(d, NOWHERE, None))

    # A database one schema behind this deputy (its last migration unrecorded).
    old = tmp_path / "old.db"
    shutil.copy(d.database, old)
    c = sqlite3.connect(old)
    with c:
        (latest,) = c.execute("SELECT max(version) FROM schema_migrations").fetchone()
        c.execute("DELETE FROM schema_migrations WHERE version = ?", (latest,))
    c.close()
    line = refused(copy(d, NOWHERE, kek, source=old))
    assert f"has schema version {latest - 1}, older than this deputy's ({latest}): migrate it first" in line

    # A running server has the database open: stop it first.
    d.start()
    line = refused(copy(d, NOWHERE, kek))
    assert "is in use by another process: stop the deputy server" in line
    d.stop()
    # The server comes back with its data: the refusals changed nothing.
    d.start()
    assert [u["username"] for u in d.cli("user", "list")] == ["alice"]


# ---------------------------------------------------------------- the move


class Before:
    """What the SQLite deployment handed out and showed before the move."""


def build_deployment(d: Deputy) -> Before:
    b = Before()
    add_user(d, "alice", PW)
    agent = add_client(d, AGENT, kind="agent", auth="client_secret_basic",
                       grants=("authorization_code", "refresh_token", "token-exchange"))
    svc = add_client(d, SVC, kind="service", auth="client_secret_basic", grants=("client_credentials",),
                     redirect_uris=(), scopes=("read",), audiences=(API,))
    d.cli("resource", "add", "--id", NOTES, "--scope", "notes:read=Read your notes")
    allow_delegation(d, AGENT, NOTES, ["notes:read"], max_lifetime=600)
    b.agent_auth = agent["client_secret"]
    b.svc_auth = svc["client_secret"]
    d.start()

    # A person signs in to the agent; the agent exchanges her token.
    person = sign_in(d, AGENT, "alice", PW, SCOPE, client_auth=b.agent_auth)
    b.at0, b.rt0 = person["access_token"], person["refresh_token"]
    b.old_kid = jwt_parts(b.at0)[0]["kid"]
    ex = exchange(d, AGENT, b.agent_auth, b.at0, audience=NOTES, scope="notes:read")
    b.at_ex = assert_token_ok(ex)["access_token"]

    # A service's token, revoked by the service.
    cc = d.token({"grant_type": "client_credentials"}, headers=basic_auth(SVC, b.svc_auth))
    b.at_svc = assert_token_ok(cc)["access_token"]
    assert revoke(d, b.at_svc, SVC, b.svc_auth).status_code == 200

    # A rotated key that signs what comes after it.
    time.sleep(1.1)
    b.new_kid = d.cli("keys", "rotate")["kid"]
    assert b.new_kid != b.old_kid

    def signed_by_new_key():
        r = d.token({"grant_type": "client_credentials"}, headers=basic_auth(SVC, b.svc_auth))
        return jwt_parts(assert_token_ok(r)["access_token"])[0]["kid"] == b.new_kid

    assert wait_for(signed_by_new_key), "the rotated key never signed"

    # The refresh token rotates once (under the new key); its predecessor
    # stays presentable within the grace window.
    t1 = assert_token_ok(refresh(d, AGENT, b.rt0, b.agent_auth))
    b.at1, b.rt1 = t1["access_token"], t1["refresh_token"]
    assert jwt_parts(b.at1)[0]["kid"] == b.new_kid

    b.jwks = d.jwks()
    b.introspected = {name: introspect_json(d, tok, client, auth) for name, tok, client, auth in (
        ("at0", b.at0, AGENT, b.agent_auth), ("at1", b.at1, AGENT, b.agent_auth),
        ("at_ex", b.at_ex, AGENT, b.agent_auth), ("at_svc", b.at_svc, SVC, b.svc_auth))}
    assert b.introspected["at0"]["active"] is True
    assert b.introspected["at_ex"]["active"] is True
    assert b.introspected["at_svc"] == {"active": False}
    d.stop()
    b.audit = audit(d)
    assert {e["event"] for e in b.audit} >= {"key_rotated", "token_issued", "refresh_rotated"}, b.audit
    return b


@needs_postgres
def test_a_sqlite_deployment_moves_to_postgresql_and_everything_issued_still_works(new_deputy, tmp_path):
    """Stop, copy, start on PostgreSQL with the same issuer: the JWKS is the
    same, old access tokens introspect exactly as before and verify against
    the new JWKS, the revoked one stays revoked, a grace-window retry of the
    rotated refresh token returns the same successor (the HMAC key came
    along), that successor refreshes, the audit trail is identical and goes
    on after its last id; a second copy into the now non-empty database is
    refused and writes nothing."""
    old = new_deputy(SQLITE_SETTINGS, name="sqlite", sqlite=True)
    b = build_deployment(old)
    kek = write_kek(tmp_path / "kek")
    url = fresh_schema("move")

    r = copy(old, url, kek)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["from"] == str(old.database)
    password = urlsplit(url).password
    if password:
        assert password not in out["to"], out["to"]
    else:
        assert out["to"] == url
    assert out["keys"] == 4  # two key generations, a P-256 and an RSA key each
    copied = out["copied"]
    assert copied["audit_events"] == len(b.audit)
    for table in ("clients", "users", "grants", "tokens", "refresh_tokens", "resources", "resource_scopes",
                  "delegation_rules", "consent_scopes", "sessions", "authorization_codes", "server_secrets"):
        assert copied[table] > 0, (table, copied)
    assert copied["clients"] == 2 and copied["users"] == 1 and copied["delegation_rules"] == 1

    # The same deployment, now on PostgreSQL: same port, so the same issuer.
    # Made as SQLite so that it takes this key-encryption key, then pointed at the copy.
    new = new_deputy({**SQLITE_SETTINGS, "DEPUTY_KEY_ENCRYPTION_KEY_FILE": str(kek)}, name="postgres", sqlite=True)
    new.database, new.port, new.direct, new.issuer = url, old.port, old.direct, old.issuer
    assert new.issuer == old.issuer
    assert audit(new) == b.audit
    new.start()
    assert new.jwks() == b.jwks
    assert {k["kid"] for k in b.jwks["keys"] if k["kty"] == "EC"} == {b.old_kid, b.new_kid}
    assert len(b.jwks["keys"]) == 4
    for name, tok, client, auth in (("at0", b.at0, AGENT, b.agent_auth), ("at1", b.at1, AGENT, b.agent_auth),
                                    ("at_ex", b.at_ex, AGENT, b.agent_auth), ("at_svc", b.at_svc, SVC, b.svc_auth)):
        assert introspect_json(new, tok, client, auth) == b.introspected[name], name
    for tok in (b.at0, b.at1, b.at_ex):
        verify_jwcrypto(new, tok)

    # A retry within the grace window: the same successor again.
    again = assert_token_ok(refresh(new, AGENT, b.rt0, b.agent_auth))
    assert again["refresh_token"] == b.rt1
    assert claims(again["access_token"])["jti"] != claims(b.at1)["jti"]
    # The successor, issued on SQLite, refreshes on PostgreSQL, signed
    # by the key that was active before the move.
    t2 = assert_token_ok(refresh(new, AGENT, b.rt1, b.agent_auth))
    assert t2["refresh_token"] not in (b.rt0, b.rt1)
    assert jwt_parts(t2["access_token"])[0]["kid"] == b.new_kid
    verify_jwcrypto(new, t2["access_token"])
    assert introspect_json(new, b.at_svc, SVC, b.svc_auth) == {"active": False}

    # The trail is the old one followed by new events with later ids.
    after = audit(new)
    assert after[:len(b.audit)] == b.audit
    last_id = max(e["id"] for e in b.audit)
    fresh = after[len(b.audit):]
    assert fresh and all(e["id"] > last_id for e in fresh), fresh
    assert [e["id"] for e in after] == sorted(e["id"] for e in after)
    new.stop()

    # Copying again into the now non-empty database: refused, nothing written.
    before_again = audit(new)
    keys_before = new.cli("keys", "list")
    line = refused(copy(old, url, kek))
    assert "the target database is not empty: clients (2 rows)" in line, line
    assert "copy only into a new database" in line
    assert audit(new) == before_again
    assert new.cli("keys", "list") == keys_before


@needs_postgres
def test_keys_dir_without_keys_is_refused_when_tokens_were_issued(new_deputy, tmp_path):
    """Copying with the wrong --keys-dir would leave every issued token
    unverifiable after the move: refused, and the target stays empty (a
    later copy with the right directory goes through)."""
    d = new_deputy(settings(), sqlite=True)
    svc = d.add_client(SVC, "client_secret_basic", audiences=[API])
    d.start()
    assert_token_ok(d.token({"grant_type": "client_credentials"}, headers=basic_auth(SVC, svc["client_secret"])))
    d.stop()
    kek = write_kek(tmp_path / "kek")
    url = fresh_schema("nokeys")
    r = d.run("--keys-dir", str(tmp_path / "elsewhere"), "store", "copy", "--from", str(d.database), "--to", url,
              "--key-encryption-key-file", str(kek), global_opts=False)
    assert "holds no signing key" in refused(r)
    r = copy(d, url, kek)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["keys"] == 2 and out["copied"]["tokens"] == 1
