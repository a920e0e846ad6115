"""OAuth 2.0 Dynamic Client Registration (RFC 7591) at `POST /register`,
as MCP clients use it (MCP authorization 2025-11-25 §"Dynamic Client
Registration").

`DEPUTY_REGISTRATION`: `off` (default: no endpoint, none advertised),
`token` (an initial access token from `deputy registration token create` is
required, RFC 7591 §3 / RFC 6750), `open` (anyone may register a public
client with loopback or https redirect URIs).
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import requests

from cimd_support import MCP_SCOPE, add_mcp_resource
from conftest import Deputy, assert_token_ok, basic_auth, jwt_parts
from oidc_support import (NO_LOGIN_RATE_LIMIT, AuthRequest, Browser, add_user, redeem, sign_in_and_allow, start,
                          www_authenticate_error)

RESOURCE = "https://mcp.example/"
DISCOVERY = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
# Registrations per second per address (default 1) off: the module registers
# many clients from 127.0.0.1; the limit has its own test.
NO_REGISTRATION_RATE_LIMIT = {"DEPUTY_RATE_LIMIT_REGISTRATION": "0"}
OPEN = {"DEPUTY_REGISTRATION": "open", **NO_LOGIN_RATE_LIMIT, **NO_REGISTRATION_RATE_LIMIT}
TOKEN = {"DEPUTY_REGISTRATION": "token", **NO_LOGIN_RATE_LIMIT, **NO_REGISTRATION_RATE_LIMIT}


def public_metadata(redirect_uris=("http://127.0.0.1:7000/callback",), **extra) -> dict:
    """What an MCP client sends (RFC 7591 §2): a public client for the code flow."""
    body = {
        "client_name": "Notes MCP client",
        "redirect_uris": list(redirect_uris),
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    for k, v in extra.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def register(d: Deputy, body, token: str | None = None, **headers) -> requests.Response:
    h = {"Content-Type": "application/json", **headers}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(d.url("/register"), data=data, headers=h, timeout=15)


def assert_registered(r: requests.Response) -> dict:
    """RFC 7591 §3.2.1: 201, JSON, client_id and client_id_issued_at, and
    every registered metadata value."""
    assert r.status_code == 201, f"expected 201, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").split(";")[0].strip() == "application/json"
    body = r.json()
    assert isinstance(body.get("client_id"), str) and body["client_id"], body
    assert isinstance(body.get("client_id_issued_at"), int), body
    assert abs(body["client_id_issued_at"] - time.time()) < 120, body
    return body


def assert_registration_error(r: requests.Response, code: str) -> dict:
    """RFC 7591 §3.2.2: 400, JSON with `error` (and nothing registered)."""
    assert r.status_code == 400, f"expected 400 {code}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").split(";")[0].strip() == "application/json"
    body = r.json()
    assert body.get("error") == code, body
    assert "client_id" not in body
    return body


def assert_bearer_refused(r: requests.Response, with_error: bool):
    """RFC 7591 §3 / RFC 6750 §3: 401 with a Bearer challenge; a token that
    was presented but is not (or no longer) good is invalid_token."""
    assert r.status_code == 401, f"expected 401, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    assert r.json().get("error") == "invalid_token", r.text[:300]
    if with_error:
        assert www_authenticate_error(r) == "invalid_token", r.headers["WWW-Authenticate"]
    assert "client_id" not in r.json()


def registered_ids(d: Deputy) -> set[str]:
    return {c.get("id") or c.get("client_id") for c in d.cli("client", "list")}


def sign_in_with(d: Deputy, client_id: str, redirect_uri: str, user: dict, *, secret: str | None = None):
    """authorize -> login -> consent -> code -> tokens for `resource`."""
    req = AuthRequest(client_id, redirect_uri, scope=f"openid {MCP_SCOPE}", extra={"resource": RESOURCE})
    q = sign_in_and_allow(Browser(d), req, "alice")
    tok = assert_token_ok(redeem(d, req, q["code"], client_secret=secret, resource=RESOURCE))
    claims = jwt_parts(tok["access_token"])[1]
    assert claims["client_id"] == client_id and claims["sub"] == user["id"], claims
    assert claims["aud"] in (RESOURCE, [RESOURCE]), claims
    return tok


@pytest.fixture(scope="module")
def open_env(module_dir):
    d = Deputy(module_dir / "open", OPEN)
    user = add_user(d, "alice")
    add_mcp_resource(d, RESOURCE)
    d.start()
    yield SimpleNamespace(d=d, user=user)
    d.stop()


@pytest.fixture(scope="module")
def token_env(module_dir):
    d = Deputy(module_dir / "token", TOKEN)
    user = add_user(d, "alice")
    add_mcp_resource(d, RESOURCE)
    d.start()
    yield SimpleNamespace(d=d, user=user)
    d.stop()


def new_initial_token(d: Deputy, *args: str) -> str:
    out = d.cli("registration", "token", "create", *args)
    tok = out["initial_access_token"]
    assert isinstance(tok, str) and len(tok) >= 20, "initial access token too short"
    return tok


# --------------------------------------------------------------------------
# Off by default
# --------------------------------------------------------------------------


def test_registration_off_by_default(new_deputy):
    """RFC 8414 §2: registration_endpoint is advertised only when there is
    one; with the default setting POST /register registers nothing."""
    d = new_deputy()
    d.start()
    for doc in DISCOVERY:
        assert "registration_endpoint" not in d.get(doc).json(), doc
    before = registered_ids(d)
    r = register(d, public_metadata())
    assert r.status_code in (403, 404), f"{r.status_code}: {r.text[:300]}"
    assert "client_id" not in r.text
    assert registered_ids(d) == before


def test_registration_is_rate_limited_per_address(new_deputy):
    """Registration is rate limited per remote address (default one a
    second): a burst from one address gets 429 with Retry-After (RFC 6585
    §4) and registers nothing more."""
    d = new_deputy({"DEPUTY_REGISTRATION": "open"})
    d.start()
    answers = [register(d, public_metadata()) for _ in range(5)]
    assert_registered(answers[0])
    limited = [r for r in answers[1:] if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert all(r.status_code in (201, 429) for r in answers), [r.status_code for r in answers]
    assert limited[0].headers.get("Retry-After", "").isdigit(), dict(limited[0].headers)
    created = sum(1 for r in answers if r.status_code == 201)
    assert len(registered_ids(d)) == created


# --------------------------------------------------------------------------
# Open registration
# --------------------------------------------------------------------------


def test_open_mode_advertises_the_endpoint(open_env):
    """RFC 8414 §2 registration_endpoint; MCP 2025-11-25: clients find it in
    the authorization server metadata."""
    for doc in DISCOVERY:
        assert open_env.d.get(doc).json()["registration_endpoint"] == open_env.d.url("/register"), doc


def test_open_mode_registers_a_public_client(open_env):
    """RFC 7591 §3.2.1: 201 with client_id, client_id_issued_at and the
    registered metadata; no client_secret for `none` (§2); the client is
    listed for the operator."""
    d = open_env.d
    meta = public_metadata(redirect_uris=["http://127.0.0.1:7001/callback", "https://app.example/cb"],
                           client_uri="https://app.example/", scope=f"openid {MCP_SCOPE}")
    body = assert_registered(register(d, meta))
    assert body["redirect_uris"] == meta["redirect_uris"]
    assert body["token_endpoint_auth_method"] == "none"
    assert body["client_name"] == "Notes MCP client"
    assert set(body["grant_types"]) <= {"authorization_code", "refresh_token"}
    assert "client_secret" not in body and "client_secret_expires_at" not in body
    assert body["client_id"] in registered_ids(d)


def test_open_mode_defaults_to_a_public_client(open_env):
    """RFC 7591 §2: token_endpoint_auth_method defaults to
    client_secret_basic; open registration makes only public clients, so a
    request that omits it is refused as invalid_client_metadata or answered
    with `none` — never a secret."""
    d = open_env.d
    r = register(d, public_metadata(token_endpoint_auth_method=None))
    if r.status_code == 201:
        assert r.json()["token_endpoint_auth_method"] == "none"
        assert "client_secret" not in r.json()
    else:
        assert_registration_error(r, "invalid_client_metadata")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "private_key_jwt"])
def test_open_mode_refuses_confidential_clients(open_env, method):
    """Open registration is for public clients only (RFC 7591 §3.2.2
    invalid_client_metadata); nothing is registered."""
    d = open_env.d
    before = registered_ids(d)
    extra = {"jwks": {"keys": []}} if method == "private_key_jwt" else {}
    assert_registration_error(register(d, public_metadata(token_endpoint_auth_method=method, **extra)),
                              "invalid_client_metadata")
    assert registered_ids(d) == before


@pytest.mark.parametrize("uri", ["javascript:alert(1)//", "http://app.example/cb", "https://app.example/cb#frag",
                                 "data:text/html,hi", "/relative/cb", "custom-scheme-without-slashes"])
def test_invalid_redirect_uri(open_env, uri):
    """RFC 7591 §3.2.2 invalid_redirect_uri: a dangerous scheme, plain http
    to a host that is not loopback (RFC 8252 §8.3, OAuth 2.1 §2.3.1), a
    fragment (RFC 6749 §3.1.2), a relative URI."""
    d = open_env.d
    before = registered_ids(d)
    assert_registration_error(register(d, public_metadata(redirect_uris=["http://127.0.0.1:7002/cb", uri])),
                              "invalid_redirect_uri")
    assert registered_ids(d) == before


@pytest.mark.parametrize("case", ["tls_client_auth", "client_secret_jwt", "not_json"])
def test_invalid_client_metadata(open_env, case):
    """RFC 7591 §3.2.2 invalid_client_metadata: an authentication method deputy
    does not support, a body that is not JSON. (A field of the wrong type,
    e.g. a numeric client_name, may instead be dropped: §3.2.1 lets the
    server replace requested values.)"""
    d = open_env.d
    before = registered_ids(d)
    body = {
        "tls_client_auth": lambda: public_metadata(token_endpoint_auth_method="tls_client_auth"),
        "client_secret_jwt": lambda: public_metadata(token_endpoint_auth_method="client_secret_jwt"),
        "not_json": lambda: b"redirect_uris=http%3A%2F%2F127.0.0.1%2Fcb",
    }[case]()
    assert_registration_error(register(d, body), "invalid_client_metadata")
    assert registered_ids(d) == before


def test_cors_on_register_and_discovery(open_env):
    """MCP 2025-11-25 (browser-based clients) / Fetch standard CORS: the
    discovery documents and /register answer `Access-Control-Allow-Origin:
    *`, including the preflight a browser sends before POSTing JSON."""
    d = open_env.d
    origin = {"Origin": "https://inspector.example"}
    for doc in DISCOVERY:
        r = d.get(doc, headers=origin)
        assert r.status_code == 200
        assert r.headers.get("Access-Control-Allow-Origin") == "*", (doc, dict(r.headers))
        # A browser client sending a header of its own (MCP-Protocol-Version)
        # preflights the document first.
        pre = requests.options(d.url(doc), headers={**origin, "Access-Control-Request-Method": "GET",
                                                    "Access-Control-Request-Headers": "mcp-protocol-version"},
                               timeout=10)
        assert pre.status_code == 204, (doc, pre.status_code, pre.text[:200])
        assert pre.headers.get("Access-Control-Allow-Origin") == "*", (doc, dict(pre.headers))
        assert pre.headers.get("Access-Control-Allow-Headers") == "*", (doc, dict(pre.headers))
        assert "GET" in pre.headers.get("Access-Control-Allow-Methods", ""), (doc, dict(pre.headers))
    pre = requests.options(d.url("/register"), headers={**origin, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "content-type"}, timeout=10)
    assert pre.status_code in (200, 204), f"{pre.status_code}: {pre.text[:200]}"
    assert pre.headers.get("Access-Control-Allow-Origin") == "*", dict(pre.headers)
    assert "POST" in pre.headers.get("Access-Control-Allow-Methods", "").upper(), dict(pre.headers)
    assert "content-type" in pre.headers.get("Access-Control-Allow-Headers", "").lower(), dict(pre.headers)
    r = register(d, public_metadata(), **origin)
    assert_registered(r)
    assert r.headers.get("Access-Control-Allow-Origin") == "*", dict(r.headers)
    bad = register(d, public_metadata(redirect_uris=["javascript:x"]), **origin)
    assert bad.status_code == 400 and bad.headers.get("Access-Control-Allow-Origin") == "*", dict(bad.headers)


def test_registered_client_signs_in_and_refreshes(open_env):
    """The registered public client completes the code flow with PKCE (RFC
    6749 §4.1, RFC 7636) for the MCP resource (RFC 8707), a loopback redirect
    on another port (RFC 8252 §7.3), and refreshes (RFC 6749 §6)."""
    d = open_env.d
    body = assert_registered(register(d, public_metadata(redirect_uris=["http://127.0.0.1/callback"])))
    cid = body["client_id"]
    tok = sign_in_with(d, cid, "http://127.0.0.1:7003/callback", open_env.user)
    r = requests.post(d.token_endpoint, data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                              "client_id": cid, "resource": RESOURCE}, timeout=15)
    assert assert_token_ok(r)["refresh_token"] != tok["refresh_token"]
    # A redirect URI it did not register goes nowhere.
    req = AuthRequest(cid, "http://127.0.0.1:7003/other", scope=f"openid {MCP_SCOPE}", extra={"resource": RESOURCE})
    page = start(Browser(d), req)
    assert page.status_code == 400 and "Location" not in page.headers


def test_registration_is_audited(open_env):
    """Every registration leaves an audit event `client_registered` naming
    the new client (and never a secret)."""
    d = open_env.d
    cid = assert_registered(register(d, public_metadata()))["client_id"]
    events = d.cli("audit", "--event", "client_registered", "--limit", "1000")
    mine = [e for e in events if e.get("client_id") == cid or cid in json.dumps(e.get("detail"))]
    assert len(mine) == 1, events[-3:]
    assert mine[0]["event"] == "client_registered" and mine[0]["outcome"] == "ok", mine[0]


# --------------------------------------------------------------------------
# Registration with an initial access token
# --------------------------------------------------------------------------


def test_token_mode_advertises_the_endpoint(token_env):
    for doc in DISCOVERY:
        assert token_env.d.get(doc).json()["registration_endpoint"] == token_env.d.url("/register"), doc


def test_token_mode_without_or_with_a_wrong_token(token_env):
    """RFC 7591 §3: the registration endpoint may require an initial access
    token; RFC 6750 §3.1: without one 401 with a Bearer challenge, with an
    unknown one 401 invalid_token. Nothing is registered."""
    d = token_env.d
    before = registered_ids(d)
    assert_bearer_refused(register(d, public_metadata()), with_error=False)
    assert_bearer_refused(register(d, public_metadata(), token="not-a-real-initial-access-token"), with_error=True)
    good = new_initial_token(d)
    assert_bearer_refused(register(d, public_metadata(), token=good[:-2] + ("AA" if not good.endswith("AA") else "BB")),
                          with_error=True)
    r = register(d, public_metadata(), Authorization=f"Basic {good}")
    assert r.status_code == 401, r.text[:300]
    assert registered_ids(d) == before


def test_token_mode_registers_a_confidential_client(token_env):
    """RFC 7591 §3.2.1: with a good initial access token a confidential
    client gets a client_secret and client_secret_expires_at 0 (never
    expires), and that secret authenticates it at /token (RFC 6749 §2.3.1).
    The audit event does not contain the secret."""
    d = token_env.d
    iat = new_initial_token(d)
    meta = public_metadata(redirect_uris=["https://app.example/cb"], token_endpoint_auth_method="client_secret_basic")
    body = assert_registered(register(d, meta, token=iat))
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    secret = body["client_secret"]
    assert isinstance(secret, str) and len(secret) >= 20
    assert body["client_secret_expires_at"] == 0
    cid = body["client_id"]
    req = AuthRequest(cid, "https://app.example/cb", scope=f"openid {MCP_SCOPE}", extra={"resource": RESOURCE})
    q = sign_in_and_allow(Browser(d), req, "alice")
    r = requests.post(d.token_endpoint, data={"grant_type": "authorization_code", "code": q["code"],
                                              "code_verifier": req.verifier, "redirect_uri": req.redirect_uri,
                                              "resource": RESOURCE},
                      headers=basic_auth(cid, secret), timeout=15)
    assert jwt_parts(assert_token_ok(r)["access_token"])[1]["client_id"] == cid
    events = d.cli("audit", "--event", "client_registered", "--limit", "1000")
    assert any(e.get("client_id") == cid or cid in json.dumps(e.get("detail")) for e in events), events[-3:]
    assert secret not in json.dumps(events)
    assert secret not in d.log_tail(10**6)


def test_token_mode_public_client_signs_in(token_env):
    """A public client registered with an initial access token works like an
    open-mode one."""
    d = token_env.d
    body = assert_registered(register(d, public_metadata(), token=new_initial_token(d)))
    sign_in_with(d, body["client_id"], "http://127.0.0.1:7004/callback", token_env.user)


def test_initial_access_token_max_uses(token_env):
    """`--max-uses 1`: the first registration succeeds, the second with the
    same token is 401 invalid_token (RFC 6750 §3.1) and registers nothing."""
    d = token_env.d
    iat = new_initial_token(d, "--max-uses", "1")
    assert_registered(register(d, public_metadata(), token=iat))
    before = registered_ids(d)
    assert_bearer_refused(register(d, public_metadata(), token=iat), with_error=True)
    assert registered_ids(d) == before


def test_initial_access_token_expires(token_env):
    """`--expires-in 1`: used after it expired, 401 invalid_token."""
    d = token_env.d
    iat = new_initial_token(d, "--expires-in", "1")
    time.sleep(2.2)
    before = registered_ids(d)
    assert_bearer_refused(register(d, public_metadata(), token=iat), with_error=True)
    assert registered_ids(d) == before


def test_initial_access_tokens_are_listed_and_revoked(token_env):
    """README (`deputy registration token list|revoke`): `create` prints the
    token once with its id (its SHA-256); `list` shows ids, uses and expiry,
    never a token; `revoke ID` ends it at once — the next registration with
    it is 401 invalid_token (RFC 6750 §3.1) and registers nothing — and a
    second revoke of the same id is an error."""
    import hashlib
    import base64
    d = token_env.d
    out = d.cli("registration", "token", "create", "--max-uses", "3")
    iat, tid = out["initial_access_token"], out["id"]
    assert tid == base64.urlsafe_b64encode(hashlib.sha256(iat.encode()).digest()).rstrip(b"=").decode()
    assert_registered(register(d, public_metadata(), token=iat))
    rows = {r["id"]: r for r in d.cli("registration", "token", "list")}
    assert rows[tid]["uses"] == 1 and rows[tid]["max_uses"] == 3 and rows[tid]["live"] is True, rows[tid]
    assert iat not in json.dumps(list(rows.values()))
    assert d.cli("registration", "token", "revoke", tid) == {"revoked": tid}
    before = registered_ids(d)
    assert_bearer_refused(register(d, public_metadata(), token=iat), with_error=True)
    assert registered_ids(d) == before
    assert tid not in {r["id"] for r in d.cli("registration", "token", "list")}
    r = d.run("registration", "token", "revoke", tid)
    assert r.returncode == 1 and "no initial access token" in r.stderr, (r.returncode, r.stderr)


def test_token_mode_checks_metadata_too(token_env):
    """A good initial access token does not make bad metadata acceptable
    (RFC 7591 §3.2.2); `jwks` and `jwks_uri` together are invalid (§2)."""
    d = token_env.d
    assert_registration_error(register(d, public_metadata(redirect_uris=["javascript:x"]), token=new_initial_token(d)),
                              "invalid_redirect_uri")
    both = public_metadata(token_endpoint_auth_method="private_key_jwt", jwks={"keys": []},
                           jwks_uri="https://app.example/jwks")
    assert_registration_error(register(d, both, token=new_initial_token(d)), "invalid_client_metadata")
