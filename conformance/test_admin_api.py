"""The admin API ("Revocation, introspection, the admin API"): who may call
it (RFC 6750 §3.1 errors, RFC 9068 §4 audience, RFC 6749 §3.3 scope), the
revocation cascade to delegated descendants (RFC 7009 §2.1, RFC 8693 §1.1 /
§4.1), token traces and the audit trail, and the CLI agreeing with the API.

Admin token: a client-credentials token of a service holding the scope
`deputy:admin`, addressed to deputy's issuer. Routes:
GET /admin/tokens?sub=&client_id=&actor=&aud=&active=&limit=,
GET /admin/tokens/{jti}, POST /admin/revoke {one selector} -> {"revoked": N},
GET /admin/audit?person=&client_id=&actor=&task=&event=&since=&until=&limit=.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import uuid
from urllib.parse import quote

import pytest
import requests

from conftest import Deputy, assert_oauth_error, assert_token_ok, basic_auth, jwt_parts
from flows import (INACTIVE, add_client, add_user, allow_delegation, exchange, introspect_json, refresh,
                   revoke, settings, sign_in)

PW = "correct horse battery staple"
X, Y = "agent-x", "agent-y"
API = "https://api.example"
OTHER = "https://other.example/"
AGENT = ("authorization_code", "refresh_token", "token-exchange")
USERS = ("alice", "u-family", "u-sub", "u-actor", "u-jti", "u-grant", "u-cli", "u-trace", "u-audit", "u-list",
         "u-admin")


class Env:
    def __init__(self, d: Deputy):
        self.d = d
        self.sec: dict[str, str] = {}
        self.rules: dict[str, str] = {}

    def cc(self, client: str, **extra) -> requests.Response:
        return requests.post(self.d.token_endpoint, data={"grant_type": "client_credentials", **extra},
                             headers=basic_auth(client, self.sec[client]), timeout=10)

    def admin_token(self) -> str:
        return assert_token_ok(self.cc("ops"))["access_token"]

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.d.url(path), headers=headers, timeout=10, **kw)

    def admin(self, method: str, path: str, **kw) -> requests.Response:
        return self.api(method, path, self.admin_token(), **kw)

    def chain(self, user: str, task_prefix: str = "t") -> dict:
        """person → agent X → agent Y → API (RFC 8693 §4.1 nested act)."""
        d = self.d
        person = sign_in(d, X, user, PW, "openid notes:read notes:write", client_auth=self.sec[X])
        t1 = f"{task_prefix}-1-{uuid.uuid4().hex[:6]}"
        t2 = f"{task_prefix}-2-{uuid.uuid4().hex[:6]}"
        h1 = assert_token_ok(exchange(d, X, self.sec[X], person["access_token"], audience=Y, task=t1))
        h2 = assert_token_ok(exchange(d, Y, self.sec[Y], h1["access_token"], resource=API, task=t2))
        c = {k: jwt_parts(v)[1] for k, v in (("person", person["access_token"]), ("h1", h1["access_token"]),
                                              ("h2", h2["access_token"]))}
        return {"person": person, "h1": h1["access_token"], "h2": h2["access_token"], "claims": c,
                "tasks": (t1, t2), "sub": c["person"]["sub"]}

    def active(self, token: str, client: str) -> bool:
        info = introspect_json(self.d, token, client, self.sec[client])
        if info.get("active") is True:
            return True
        assert info == INACTIVE, info
        return False


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir / "admin", settings())
    e = Env(d)
    for u in USERS:
        add_user(d, u, PW)
    e.sec[X] = add_client(d, X, kind="agent", auth="client_secret_basic", grants=AGENT,
                          scopes=("notes:read", "notes:write", "deputy:admin"))["client_secret"]
    e.sec[Y] = add_client(d, Y, kind="agent", auth="client_secret_basic", grants=("token-exchange",),
                          redirect_uris=(), scopes=())["client_secret"]

    def service(cid, scopes, audiences):
        args = ["client", "add", "--id", cid, "--kind", "service", "--auth", "client_secret_basic"]
        for s in scopes:
            args += ["--scope", s]
        for a in audiences:
            args += ["--audience", a]
        e.sec[cid] = d.cli(*args)["client_secret"]

    service("ops", ["deputy:admin"], [d.issuer])
    service("ops-noscope", ["read"], [d.issuer])
    service("ops-otheraud", ["deputy:admin"], [OTHER, d.issuer])
    e.sec["app-admin"] = add_client(d, "app-admin", auth="client_secret_basic",
                                    scopes=("notes:read", "deputy:admin"))["client_secret"]
    e.rules["x-y"] = allow_delegation(d, X, Y, ["notes:read", "notes:write"], max_depth=1)["id"]
    e.rules["y-api"] = allow_delegation(d, Y, API, ["notes:read"], max_depth=2)["id"]
    e.rules["x-issuer"] = allow_delegation(d, X, d.issuer, ["deputy:admin"], max_depth=1)["id"]
    d.start()
    yield e
    d.stop()


ROUTES = [("GET", "/admin/tokens"), ("GET", "/admin/tokens?sub=alice"), ("GET", "/admin/tokens/some-jti"),
          ("POST", "/admin/revoke"), ("GET", "/admin/audit"), ("GET", "/admin/audit?actor=agent-x"),
          # unknown paths and wrong methods are behind the same gate
          ("GET", "/admin/nothing-here"), ("DELETE", "/admin/tokens"), ("GET", "/admin/revoke"),
          ("PUT", "/admin/audit")]


def revoke_body(method):
    return {"json": {"sub": "alice"}} if method == "POST" else {}


# --------------------------------------------------------------------------
# Who may call
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_refuses_without_a_token_rfc6750_s3_1(env, method, path):
    """RFC 6750 §3.1: a request without any Bearer credential → 401 with
    `WWW-Authenticate: Bearer` and no error code in the challenge; Basic
    credentials of the admin client (not a Bearer token) or an empty Bearer
    are refused the same way or as invalid_token; never a listing."""
    e = env
    r = e.api(method, path, **revoke_body(method))
    assert r.status_code == 401, (r.status_code, r.text[:200])
    assert r.headers.get("WWW-Authenticate") == "Bearer", r.headers
    assert r.json().get("error") == "invalid_token"
    for headers in (basic_auth("ops", e.sec["ops"]), {"Authorization": "Bearer"}, {"Authorization": "Bearer "}):
        r = e.api(method, path, headers=dict(headers), **revoke_body(method))
        assert r.status_code == 401, (headers, r.status_code, r.text[:200])
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_refuses_garbage_rfc6750_s3_1(env, method, path):
    """RFC 6750 §3.1 invalid_token: a garbage, a truncated and a forged-`none`
    Bearer token → 401 with `error="invalid_token"` in WWW-Authenticate."""
    e = env
    admin = e.admin_token()
    h, p, _ = admin.split(".")
    none = f"{h}.{p}."
    for tok in ("garbage", admin[:-10], none, "a.b.c"):
        r = e.api(method, path, tok, **revoke_body(method))
        assert r.status_code == 401, (tok[:20], r.status_code, r.text[:200])
        assert 'error="invalid_token"' in r.headers.get("WWW-Authenticate", ""), r.headers
        assert r.json().get("error") == "invalid_token"


def non_admin_tokens(e: Env) -> dict[str, str]:
    d = e.d
    noscope = assert_token_ok(e.cc("ops-noscope"))["access_token"]
    otheraud = assert_token_ok(e.cc("ops-otheraud"))["access_token"]
    assert jwt_parts(otheraud)[1]["aud"] == OTHER and "deputy:admin" in jwt_parts(otheraud)[1]["scope"]
    person = sign_in(d, "app-admin", "u-admin", PW, "openid deputy:admin",
                     client_auth=e.sec["app-admin"])["access_token"]
    pc = jwt_parts(person)[1]
    assert pc["aud"] == d.issuer and "deputy:admin" in pc["scope"].split(), pc
    agent_person = sign_in(d, X, "u-admin", PW, "openid deputy:admin", client_auth=e.sec[X])["access_token"]
    deleg = assert_token_ok(exchange(d, X, e.sec[X], agent_person, audience=d.issuer,
                                     scope="deputy:admin"))["access_token"]
    dc = jwt_parts(deleg)[1]
    assert dc["aud"] == d.issuer and dc["scope"] == "deputy:admin" and dc["act"] == {"sub": X}, dc
    return {"no-scope": noscope, "other-audience": otheraud, "person-with-deputy:admin": person,
            "delegation-with-deputy:admin": deleg}


@pytest.mark.parametrize("method,path", ROUTES)
def test_tokens_without_admin_rights_are_403_rfc6750_s3_1(env, method, path):
    """RFC 6750 §3.1 insufficient_scope and RFC 9068 §4 (the audience must be
    this server): a valid token lacking deputy:admin, one addressed to
    another audience, a person's sign-in token carrying deputy:admin and a
    delegation token carrying it (aud = issuer) → 403 with
    `error="insufficient_scope"` and `scope="deputy:admin"` in the challenge.
    The refused POST revoked nothing."""
    e = env
    victim = sign_in(e.d, X, "u-admin", PW, "openid notes:read", client_auth=e.sec[X])["access_token"]
    for name, tok in non_admin_tokens(e).items():
        r = e.api(method, path, tok, json={"sub": jwt_parts(victim)[1]["sub"]} if method == "POST" else None)
        assert r.status_code == 403, (name, r.status_code, r.text[:200])
        www = r.headers.get("WWW-Authenticate", "")
        assert 'error="insufficient_scope"' in www and 'scope="deputy:admin"' in www, (name, www)
        assert r.json().get("error") == "insufficient_scope", (name, r.text)
    assert e.active(victim, X)


def test_admin_token_works_and_revoked_admin_token_stops_at_once_rfc7009_s2(env):
    """Control, then RFC 7009 §2 / RFC 6750 §3.1: the admin token lists
    (200, JSON array, no-store); once its client revokes it (RFC 7009) the
    very next admin request is 401 invalid_token."""
    e = env
    tok = e.admin_token()
    r = e.api("GET", "/admin/tokens?limit=5", tok)
    assert r.status_code == 200 and isinstance(r.json(), list) and len(r.json()) <= 5, r.text[:200]
    assert "no-store" in r.headers.get("Cache-Control", "")
    assert revoke(e.d, tok, "ops", e.sec["ops"]).status_code == 200
    r = e.api("GET", "/admin/tokens?limit=5", tok)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers.get("WWW-Authenticate", ""), r.text


def test_admin_revoke_with_a_slow_body_rechecks_the_caller_rfc6750_s3_1(env):
    """RFC 6750 §3.1 / RFC 7009 §2: the admin gate reads the headers, but the
    revocation acts only once the body is in. Headers sent, then the admin
    token revoked, then the body: 401 invalid_token, and the target token
    stays active."""
    e = env
    victim = e.admin_token()
    tok = e.admin_token()
    body = json.dumps({"jti": jwt_parts(victim)[1]["jti"]}).encode()
    u = urllib.parse.urlsplit(e.d.url("/admin/revoke"))
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall((f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {tok}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n").encode())
        time.sleep(0.3)  # the gate has run on the headers
        assert revoke(e.d, tok, "ops", e.sec["ops"]).status_code == 200
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 401"), head
    assert 'error="invalid_token"' in head, head
    assert e.active(victim, "ops")


# --------------------------------------------------------------------------
# Revocation cascade at depth three
# --------------------------------------------------------------------------


def act_chain(act) -> list[str]:
    """The actors an `act` claim names, outermost first (RFC 8693 §4.1)."""
    out = []
    while isinstance(act, dict):
        out.append(act.get("sub"))
        act = act.get("act")
    return out


def assert_chain_state(e: Env, ch: dict, person_active: bool):
    """Every exchanged descendant inactive at once; the person's token as stated."""
    assert e.active(ch["h1"], X) is False, "X's delegation token still active"
    assert e.active(ch["h1"], Y) is False
    assert e.active(ch["h2"], Y) is False, "Y's delegation token (depth three) still active"
    assert e.active(ch["person"]["access_token"], X) is person_active
    # A revoked subject token cannot be exchanged again (RFC 8693 §2.2.2).
    assert_oauth_error(exchange(e.d, Y, e.sec[Y], ch["h1"], resource=API), 400, "invalid_request")


def test_cascade_revoke_refresh_family_via_rfc7009_s2_1(env):
    """RFC 7009 §2.1 ("revocation of the refresh token ... SHOULD also
    invalidate all access tokens based on the same authorization grant") with
    RFC 8693: person → X → Y → API; X revokes the person's refresh token at
    /revoke → the person's access token, X's and Y's delegation tokens all
    introspect {"active": false} immediately; the refresh token is dead
    (400 invalid_grant)."""
    e = env
    ch = e.chain("u-family")
    for tok, client in ((ch["person"]["access_token"], X), (ch["h1"], X), (ch["h2"], Y)):
        assert e.active(tok, client)
    r = revoke(e.d, ch["person"]["refresh_token"], X, e.sec[X], token_type_hint="refresh_token")
    assert r.status_code == 200
    assert_chain_state(e, ch, person_active=False)
    assert_oauth_error(refresh(e.d, X, ch["person"]["refresh_token"], e.sec[X]), 400, "invalid_grant")


@pytest.mark.parametrize("selector", ["sub", "actor", "jti", "grant_id"])
def test_cascade_admin_revoke_depth_three_rfc7009_s2_1(env, selector):
    """RFC 7009 §2.1 cascade through RFC 8693 delegation, via POST
    /admin/revoke with exactly one selector: by the person (`sub`: all of
    theirs), by the actor X (every token whose act names X and its
    descendants — the person's own token stays active), by X's token `jti`
    (it and its descendants: revoked = 2), by `grant_id` (the grant, its
    refresh family and every token derived). {"revoked": N} equals the number
    of matching tokens the API listed as active just before; afterwards the
    listing shows none active and every descendant introspects
    {"active": false}."""
    e = env
    ch = e.chain({"sub": "u-sub", "actor": "u-actor", "jti": "u-jti", "grant_id": "u-grant"}[selector])
    h1c = ch["claims"]["h1"]
    trace = e.admin("GET", "/admin/tokens/" + quote(h1c["jti"], safe="")).json()
    value = {"sub": ch["sub"], "actor": X, "jti": h1c["jti"], "grant_id": trace["grant"]["id"]}[selector]
    if selector == "sub":
        before = e.admin("GET", "/admin/tokens", params={"sub": value, "active": "true", "limit": "1000"}).json()
    elif selector == "actor":
        # The actor selector means everything X can do: tokens issued *to* X
        # (the person's sign-in at X) and tokens whose act chain names X —
        # the same set the listing's actor filter shows — with descendants.
        before = e.admin("GET", "/admin/tokens", params={"actor": X, "active": "true",
                                                        "limit": "1000"}).json()
    elif selector == "jti":
        before = [t for t in [trace["token"]] + trace["descendants"] if t["active"]]
        assert len(before) == 2, before
    else:
        before = None
    r = e.admin("POST", "/admin/revoke", json={selector: value})
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers.get("Cache-Control", "")
    n = r.json()["revoked"]
    assert isinstance(n, int) and set(r.json()) == {"revoked"}, r.json()
    if before is not None:
        # Revocation also reaches tokens that already expired but were never
        # revoked, which the active listing leaves out: at least the listed ones.
        assert n >= len(before), (n, len(before), [(t["kind"], t["client_id"]) for t in before])
    else:
        assert n >= 4, n  # person access + id + refresh, X's, Y's
    assert_chain_state(e, ch, person_active=selector == "jti")
    if selector == "sub":
        assert e.admin("GET", "/admin/tokens", params={"sub": value, "active": "true"}).json() == []
    if selector == "actor":
        after = e.admin("GET", "/admin/tokens", params={"actor": X, "active": "true", "limit": "1000"}).json()
        assert [t for t in after if X in act_chain(t["act"])] == [], after
    if selector in ("sub", "grant_id", "actor"):
        # The person's refresh family at X is gone too (for actor: X held it).
        assert_oauth_error(refresh(e.d, X, ch["person"]["refresh_token"], e.sec[X]), 400, "invalid_grant")
    else:
        # Revoking one delegation token leaves the person's sign-in alone.
        assert_token_ok(refresh(e.d, X, ch["person"]["refresh_token"], e.sec[X]))
    # Revoking again finds nothing left to revoke.
    assert e.admin("POST", "/admin/revoke", json={selector: value}).json() == {"revoked": 0}


@pytest.mark.parametrize("body,ctype", [
    ({}, "application/json"),
    ({"jti": "a", "sub": "b"}, "application/json"),
    ({"token": "x"}, "application/json"),
    ({"jti": ""}, "application/json"),
    ({"jti": 5}, "application/json"),
    ({"sub": None}, "application/json"),
    ("jti=a", "application/x-www-form-urlencoded"),
    ("{not json", "application/json"),
    ('{"sub": "x"}', "text/plain"),
], ids=["empty", "two-selectors", "unknown-member", "empty-value", "number", "null", "form", "bad-json",
        "text-plain"])
def test_admin_revoke_needs_exactly_one_selector_rfc6749_s5_2(env, body, ctype):
    """RFC 6749 §5.2 style errors for the admin API: a body without exactly
    one known selector (jti, sub, client_id, actor, grant_id), with a wrong
    type, not JSON, or not application/json → 400 invalid_request; nothing is
    revoked (a live person token stays active)."""
    e = env
    victim = sign_in(e.d, X, "alice", PW, "openid notes:read", client_auth=e.sec[X])["access_token"]
    data = body if isinstance(body, str) else json.dumps(body)
    r = e.admin("POST", "/admin/revoke", data=data, headers={"Content-Type": ctype})
    assert_oauth_error(r, 400, "invalid_request")
    assert e.active(victim, X)


def test_admin_revoke_body_over_64_kib_is_413(env):
    """README (bodies over 64 KiB: 413) / RFC 9110 §15.5.14 at /admin/revoke."""
    e = env
    r = e.admin("POST", "/admin/revoke", data='{"jti": "' + "j" * 70000 + '"}',
                headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:200])


# --------------------------------------------------------------------------
# Trace, listing, audit
# --------------------------------------------------------------------------


def test_trace_of_final_delegation_token_rfc8693_s4_1(env):
    """RFC 8693 §4.1 (act names the chain) / §1.1 (delegation): GET
    /admin/tokens/{jti} of the depth-three token answers which person (sub),
    which chain of actors (act Y → X), which task, what scope, granted when
    (iat, grant created_at and auth_time), under which rule (rule_id of
    Y → API; its parent under X → Y), its ancestors (X's token, then the
    person's) and the grant it hangs from (the person's sign-in at X). The
    person's token lists both delegation tokens as descendants. Unknown jti
    → 404 not_found."""
    e = env
    ch = e.chain("u-trace")
    c1, c2, cp = ch["claims"]["h1"], ch["claims"]["h2"], ch["claims"]["person"]
    r = e.admin("GET", "/admin/tokens/" + quote(c2["jti"], safe=""))
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers.get("Cache-Control", "")
    t = r.json()
    tok = t["token"]
    assert tok["jti"] == c2["jti"] and tok["kind"] == "access"
    assert tok["sub"] == ch["sub"] and tok["subject_kind"] == "person"
    assert tok["act"] == {"sub": Y, "act": {"sub": X}} == c2["act"]
    assert tok["client_id"] == Y and tok["aud"] == API
    assert tok["task"] == ch["tasks"][1] == c2["task"]
    assert tok["scope"] == "notes:read" == c2["scope"]
    assert tok["iat"] == c2["iat"] and tok["exp"] == c2["exp"]
    assert tok["rule_id"] == e.rules["y-api"]
    assert tok["parent_jti"] == c1["jti"]
    assert tok["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert tok["active"] is True and tok["revoked_at"] is None
    assert [a["jti"] for a in t["ancestors"]] == [c1["jti"], cp["jti"]]
    a1 = t["ancestors"][0]
    assert a1["act"] == {"sub": X} and a1["rule_id"] == e.rules["x-y"] and a1["task"] == ch["tasks"][0]
    assert t["ancestors"][1]["act"] is None and t["ancestors"][1]["client_id"] == X
    assert t["descendants"] == []
    g = t["grant"]
    assert g["sub"] == ch["sub"] and g["client_id"] == X and g["grant_type"] == "authorization_code"
    assert g["auth_time"] == cp["auth_time"] and g["created_at"] <= tok["iat"] and g["active"] is True
    # The other direction: the person's token has both as descendants.
    tp = e.admin("GET", "/admin/tokens/" + quote(cp["jti"], safe="")).json()
    assert {x["jti"] for x in tp["descendants"]} == {c1["jti"], c2["jti"]}
    r = e.admin("GET", "/admin/tokens/no-such-jti-" + uuid.uuid4().hex)
    assert_oauth_error(r, 404, "not_found")


def test_token_listing_filters(env):
    """GET /admin/tokens filters: sub (the person's tokens only), client_id,
    actor (what the actor can use: tokens issued to it, naming it in act, or
    addressed to it), aud, active, limit; unknown,
    repeated or malformed parameters → 400 invalid_request (a filter silently
    ignored would list more)."""
    e = env
    ch = e.chain("u-list")
    c1, c2 = ch["claims"]["h1"], ch["claims"]["h2"]
    by_sub = e.admin("GET", "/admin/tokens", params={"sub": ch["sub"], "limit": "1000"}).json()
    assert by_sub and all(t["sub"] == ch["sub"] for t in by_sub)
    assert {c1["jti"], c2["jti"], ch["claims"]["person"]["jti"]} <= {t["jti"] for t in by_sub}
    # actor=Y: h1 is addressed to Y (Y may exchange it, RFC 8693 §2.1), h2 names Y
    by_actor = e.admin("GET", "/admin/tokens", params={"actor": Y, "sub": ch["sub"]}).json()
    assert sorted(t["jti"] for t in by_actor) == sorted([c1["jti"], c2["jti"]]), by_actor
    # actor=X: tokens whose act chain names X, and tokens issued to X (the
    # party presenting them) — here the person's sign-in tokens at X.
    by_actor = e.admin("GET", "/admin/tokens", params={"actor": X, "sub": ch["sub"], "limit": "1000"}).json()
    issued_to_x = {t["jti"] for t in by_sub if t["client_id"] == X}
    assert {t["jti"] for t in by_actor} == {c1["jti"], c2["jti"]} | issued_to_x, by_actor
    assert {t["kind"] for t in by_sub if t["client_id"] == X and t["act"] is None} == {"access", "id", "refresh"}
    by_aud = e.admin("GET", "/admin/tokens", params={"aud": API, "sub": ch["sub"]}).json()
    assert [t["jti"] for t in by_aud] == [c2["jti"]]
    by_client = e.admin("GET", "/admin/tokens", params={"client_id": Y, "sub": ch["sub"]}).json()
    assert [t["jti"] for t in by_client] == [c2["jti"]]
    assert len(e.admin("GET", "/admin/tokens", params={"sub": ch["sub"], "limit": "1"}).json()) == 1
    assert e.admin("GET", "/admin/tokens", params={"sub": ch["sub"], "active": "false"}).json() == []
    for qs in ("subject=x", "sub=a&sub=b", "active=yes", "limit=0", "limit=x", "limit=-1"):
        assert_oauth_error(e.admin("GET", "/admin/tokens?" + qs), 400, "invalid_request")
    for qs in ("who=x", "since=yesterday", "limit=0"):
        assert_oauth_error(e.admin("GET", "/admin/audit?" + qs), 400, "invalid_request")


def test_audit_by_actor_shows_the_exchanges_with_their_task_rfc8693_s4_1(env):
    """RFC 8693 §4.1 / README audit trail: GET /admin/audit?actor=X shows
    the two granted exchanges of the chain (event token_exchange, outcome ok)
    with the person, the act chain, the requesting client, the target, the
    scope, the task, the issued jti and the rule; task= finds exactly the one
    event; a refused exchange (no rule) is recorded as refused with a reason;
    an admin revocation is itself audited (event admin_revoke)."""
    e = env
    ch = e.chain("u-audit", task_prefix="audit")
    c1, c2 = ch["claims"]["h1"], ch["claims"]["h2"]
    trail = e.admin("GET", "/admin/audit", params={"actor": X, "event": "token_exchange", "limit": "1000"}).json()
    by_jti = {ev["jti"]: ev for ev in trail}
    assert c1["jti"] in by_jti and c2["jti"] in by_jti, [ev["jti"] for ev in trail][-5:]
    ev1, ev2 = by_jti[c1["jti"]], by_jti[c2["jti"]]
    for ev, c, task, client, rule in ((ev1, c1, ch["tasks"][0], X, e.rules["x-y"]),
                                      (ev2, c2, ch["tasks"][1], Y, e.rules["y-api"])):
        assert ev["event"] == "token_exchange" and ev["outcome"] == "ok", ev
        assert ev["person"] == ch["sub"]
        assert ev["task"] == task
        assert ev["act"] == c["act"]
        assert ev["client_id"] == client
        assert ev["aud"] == c["aud"]
        assert ev["scope"] == c["scope"]
        assert ev["rule_id"] == rule
    by_task = e.admin("GET", "/admin/audit", params={"task": ch["tasks"][1]}).json()
    assert [ev["jti"] for ev in by_task] == [c2["jti"]], by_task
    # person= takes the person's id (sub) or their username: the same trail
    by_id = e.admin("GET", "/admin/audit", params={"person": ch["sub"], "limit": "1000"}).json()
    by_name = e.admin("GET", "/admin/audit", params={"person": "u-audit", "limit": "1000"}).json()
    assert by_id and by_name == by_id
    assert e.d.cli("audit", "--person", "u-audit", "--limit", "1000") == by_id
    # A refused exchange is in the trail with its task and a reason.
    task = "refused-" + uuid.uuid4().hex[:6]
    r = exchange(e.d, X, e.sec[X], ch["person"]["access_token"], audience="https://no-rule.example", task=task)
    assert_oauth_error(r, 400, "invalid_target")
    refused = e.admin("GET", "/admin/audit", params={"task": task}).json()
    assert len(refused) == 1 and refused[0]["outcome"] == "refused" and refused[0]["reason"], refused
    assert refused[0]["person"] == ch["sub"] and refused[0]["event"] == "token_exchange"
    # An admin revocation is audited too.
    e.admin("POST", "/admin/revoke", json={"jti": c2["jti"]})
    revs = e.admin("GET", "/admin/audit", params={"event": "admin_revoke", "client_id": "ops",
                                                  "limit": "1000"}).json()
    assert any(ev["outcome"] == "ok" and json.dumps(ev["detail"]).find(c2["jti"]) >= 0 for ev in revs), revs[-3:]


# --------------------------------------------------------------------------
# The CLI agrees with the API
# --------------------------------------------------------------------------


def test_cli_trace_audit_revoke_match_the_api(env):
    """The CLI reads and writes the same store the API does: `deputy trace
    JTI` prints exactly the API's GET /admin/tokens/{jti} JSON; `deputy
    audit --actor X` (and with --task) exactly GET /admin/audit?actor=X;
    `deputy revoke --actor X` prints {"revoked": N} with N the API's count
    of active tokens naming X, after which the API lists none active and the
    delegation tokens and the person's sign-in at X introspect
    {"active": false} (RFC 7662 §2.2)."""
    e = env
    d = e.d
    ch = e.chain("u-cli", task_prefix="cli")
    c2 = ch["claims"]["h2"]
    api_trace = e.admin("GET", "/admin/tokens/" + quote(c2["jti"], safe="")).json()
    assert d.cli("trace", c2["jti"]) == api_trace
    r = d.run("trace", "no-such-jti")
    assert r.returncode == 1 and r.stderr.startswith("deputy: error:"), (r.returncode, r.stderr)

    assert d.cli("audit", "--actor", X) == e.admin("GET", "/admin/audit", params={"actor": X}).json()
    cli_task = d.cli("audit", "--actor", X, "--task", ch["tasks"][0])
    assert cli_task == e.admin("GET", "/admin/audit", params={"actor": X, "task": ch["tasks"][0]}).json()
    assert [ev["jti"] for ev in cli_task] == [ch["claims"]["h1"]["jti"]]

    before = e.admin("GET", "/admin/tokens", params={"actor": X, "active": "true", "limit": "1000"}).json()
    assert {ch["claims"]["h1"]["jti"], c2["jti"]} <= {t["jti"] for t in before}
    out = d.cli("revoke", "--actor", X)
    assert set(out) == {"revoked"} and out["revoked"] >= len(before), (out, len(before))
    after = e.admin("GET", "/admin/tokens", params={"actor": X, "active": "true", "limit": "1000"}).json()
    assert after == []
    # The person's sign-in at X is something X could use: it is revoked too.
    assert_chain_state(e, ch, person_active=False)
    after_trace = e.admin("GET", "/admin/tokens/" + quote(c2["jti"], safe="")).json()
    assert after_trace["token"]["active"] is False and after_trace["token"]["revoked_at"] is not None
    assert d.cli("trace", c2["jti"]) == after_trace
