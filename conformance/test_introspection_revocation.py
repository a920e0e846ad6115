"""Introspection (RFC 7662 §2.1, §2.2, §2.3, §4), JWT introspection
responses (RFC 9701 §4, §5) and revocation (RFC 7009 §2.1, §2.2, §2.2.1).

Visibility (RFC 7662 §4): a caller sees a token only if it is the token's
client_id, or the token's aud is the caller's id, or the aud is a resource
registered with `deputy resource add --id URI --client CALLER`; otherwise
exactly {"active": false}."""

import time

import pytest

from conftest import ClientKey, Deputy, assert_oauth_error, assert_token_ok, b64url_json, sign_compact
from flows import (INACTIVE, add_client, add_user, allow_delegation, claims, exchange, introspect,
                   introspect_json, post, refresh, revoke, settings, sign_in, verify_jwcrypto)

PW = "correct horse battery staple"
SCOPE = "openid notes:read notes:write"
NOTES = "https://notes.example"
API = "https://api.example/"
X, Y = "agent-x", "agent-y"
JWT_MEDIA = "application/token-introspection+jwt"
ACTIVE_MEMBERS = {"active", "scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "token_type"}


def install(d: Deputy) -> dict:
    for u in ("alice", "bob"):
        add_user(d, u, PW)
    c = {}
    c["web"] = add_client(d, "web")
    c["conf"] = add_client(d, "conf", auth="client_secret_basic", audiences=(NOTES,))
    c["conf2"] = add_client(d, "conf2", auth="client_secret_post")
    c["stranger"] = add_client(d, "stranger", auth="client_secret_basic")
    c["notes-api"] = add_client(d, "notes-api", kind="service", auth="client_secret_basic",
                                grants=("client_credentials",), redirect_uris=(), scopes=("read",),
                                audiences=(API,))
    c["svc"] = add_client(d, "svc", kind="service", auth="client_secret_basic", grants=("client_credentials",),
                          redirect_uris=(), scopes=("read", "write"), audiences=(API,))
    c[X] = add_client(d, X, kind="agent", auth="client_secret_basic",
                      grants=("authorization_code", "refresh_token", "token-exchange"))
    c[Y] = add_client(d, Y, kind="agent", auth="client_secret_post", grants=("token-exchange",),
                      redirect_uris=(), scopes=())
    d.cli("resource", "add", "--id", NOTES, "--client", "notes-api")
    allow_delegation(d, X, Y, ["notes:read", "notes:write"])
    allow_delegation(d, Y, NOTES, ["notes:read"], max_depth=2)
    return c


class Env:
    def __init__(self, d, c):
        self.d, self.c = d, c

    def auth(self, cid):
        secret = self.c[cid]["client_secret"]
        return ("post", secret) if self.c[cid]["auth_method"] == "client_secret_post" else secret

    def person(self, cid="conf", user="alice", scope=SCOPE, **params) -> dict:
        return sign_in(self.d, cid, user, PW, scope, client_auth=self.auth(cid), extra_params=params or None)

    def cc(self, cid="svc") -> str:
        return assert_token_ok(post(self.d, "/token", cid, self.auth(cid),
                                    {"grant_type": "client_credentials"}))["access_token"]

    def intro(self, token, cid, **extra) -> dict:
        return introspect_json(self.d, token, cid, self.auth(cid), **extra)

    def revoke(self, token, cid, **extra):
        r = revoke(self.d, token, cid, self.auth(cid), **extra)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        assert "no-store" in r.headers.get("Cache-Control", "").lower()
        return r

    def exchange(self, cid, subject, **kw) -> dict:
        return assert_token_ok(exchange(self.d, cid, self.auth(cid), subject, **kw))


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir / "introspection", settings())
    c = install(d)
    d.start()
    yield Env(d, c)
    d.stop()


def assert_active_matches(info: dict, token: str):
    """RFC 7662 §2.2 members agree with the token's own claims."""
    assert info["active"] is True, info
    assert ACTIVE_MEMBERS <= set(info), info
    assert info["token_type"] == "Bearer"
    cl = claims(token)
    for k in ("client_id", "sub", "aud", "iss", "exp", "iat", "jti", "scope"):
        assert info[k] == cl[k], (k, info[k], cl[k])


# ---------------------------------------------------------------- active answers


def test_active_person_token_members_rfc7662_s2_2(env):
    """RFC 7662 §2.2: an active token answers active, scope, client_id, sub,
    aud, iss, exp, iat, jti, token_type Bearer, matching the token; no act or
    task on a non-delegated token; Cache-Control no-store (RFC 7662 §2.2 /
    RFC 6749 §5.1)."""
    d = env.d
    t = env.person()
    r = introspect(d, t["access_token"], "conf", env.auth("conf"))
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert "no-store" in r.headers.get("Cache-Control", "").lower()
    info = r.json()
    assert_active_matches(info, t["access_token"])
    assert info["client_id"] == "conf" and info["aud"] == d.issuer and info["iss"] == d.issuer
    assert set(info["scope"].split()) == set(SCOPE.split())
    assert "act" not in info and "task" not in info


def test_active_service_token_rfc7662_s2_2(env):
    """RFC 7662 §2.2: a client-credentials token introspected by its client
    (client_secret_basic)."""
    tok = env.cc("svc")
    info = env.intro(tok, "svc")
    assert_active_matches(info, tok)
    assert info["sub"] == "svc" and info["aud"] == API


def test_client_secret_post_caller_rfc7662_s2_1(env):
    """RFC 7662 §2.1 with RFC 6749 §2.3.1: the caller may authenticate with
    client_secret_post."""
    t = env.person("conf2")
    assert_active_matches(env.intro(t["access_token"], "conf2"), t["access_token"])


# ---------------------------------------------------------------- visibility


def test_visibility_rfc7662_s4(env):
    """RFC 7662 §4: the token's client sees it; a client registered as the
    token's resource (aud) sees it; anybody else gets exactly
    {"active": false}."""
    t = env.person(resource=NOTES)
    tok = t["access_token"]
    assert claims(tok)["aud"] == NOTES
    assert_active_matches(env.intro(tok, "conf"), tok)
    assert_active_matches(env.intro(tok, "notes-api"), tok)
    assert env.intro(tok, "stranger") == INACTIVE
    assert env.intro(tok, "conf2") == INACTIVE
    assert env.intro(tok, "svc") == INACTIVE
    # A plain token (aud = issuer) is not the resource's to see.
    plain = env.person()["access_token"]
    assert env.intro(plain, "notes-api") == INACTIVE


def test_visibility_by_audience_client_id_and_delegation_members_rfc7662_s4(env):
    """RFC 7662 §4 + RFC 8693 §4.1: a token whose aud is the caller's client
    id is visible to it; a delegation token also answers act and task."""
    person = env.person(X)
    b = env.exchange(X, person["access_token"], audience=Y, task="T-1")
    tok = b["access_token"]
    for caller in (X, Y):
        info = env.intro(tok, caller)
        assert_active_matches(info, tok)
        assert info["act"] == {"sub": X}
        assert info["task"] == "T-1"
        assert info["aud"] == Y and info["client_id"] == X
    assert env.intro(tok, "stranger") == INACTIVE


# ---------------------------------------------------------------- inactive answers


def test_unknown_garbage_and_forged_are_inactive_rfc7662_s2_2(env):
    """RFC 7662 §2.2: unknown, garbage or forged tokens answer exactly
    {"active": false} with 200 — never an error, never a reason."""
    d = env.d
    genuine = env.person()["access_token"]
    key = ClientKey("ES256", kid="foreign")
    forged = sign_compact({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims(genuine), key.jwk)
    h, _, s = genuine.split(".")
    tampered = f"{h}.{b64url_json({**claims(genuine), 'scope': 'admin'})}.{s}"
    for tok in ("garbage", "A" * 43, "a.b.c", forged, tampered, "x" * 5000):
        assert env.intro(tok, "conf") == INACTIVE, tok[:40]


def test_revoked_token_is_inactive_rfc7009_s2_rfc7662_s2_2(env):
    """RFC 7009 §2 then RFC 7662 §2.2: a revoked access token answers exactly
    {"active": false} at once."""
    t = env.person()
    assert env.intro(t["access_token"], "conf")["active"] is True
    env.revoke(t["access_token"], "conf")
    assert env.intro(t["access_token"], "conf") == INACTIVE


def test_expired_token_is_inactive_rfc7662_s2_2(new_deputy):
    """RFC 7662 §2.2: an expired token (DEPUTY_ACCESS_TOKEN_TTL=2, 3 s later)
    is exactly {"active": false}, in JSON and in the JWT answer; revoking it
    is still 200 (RFC 7009 §2.2)."""
    d = new_deputy(settings(DEPUTY_ACCESS_TOKEN_TTL="2"))
    e = Env(d, install(d))
    d.start()
    tok = e.cc("svc")
    assert e.intro(tok, "svc")["active"] is True
    time.sleep(3.0)
    assert e.intro(tok, "svc") == INACTIVE
    r = introspect(d, tok, "svc", e.auth("svc"), headers={"Accept": JWT_MEDIA})
    assert r.status_code == 200
    _, jc = verify_jwcrypto(d, r.text, typ="token-introspection+jwt")
    assert jc["token_introspection"] == INACTIVE
    e.revoke(tok, "svc")


# ---------------------------------------------------------------- request rules


def test_wrong_hint_still_finds_token_rfc7662_s2_1(env):
    """RFC 7662 §2.1: token_type_hint is only a hint; a wrong one must not
    hide the token."""
    t = env.person()
    info = env.intro(t["access_token"], "conf", token_type_hint="refresh_token")
    assert_active_matches(info, t["access_token"])
    info = env.intro(t["refresh_token"], "conf", token_type_hint="access_token")
    assert info["active"] is True and info["token_type"] == "refresh_token"


def test_missing_token_is_invalid_request_rfc7662_s2_1(env):
    """RFC 7662 §2.1 / RFC 6749 §5.2: `token` is REQUIRED → 400 invalid_request."""
    r = post(env.d, "/introspect", "conf", env.auth("conf"), {})
    assert_oauth_error(r, 400, "invalid_request")
    r = post(env.d, "/introspect", "conf", env.auth("conf"), {"token_type_hint": "access_token"})
    assert_oauth_error(r, 400, "invalid_request")


def test_caller_must_authenticate_rfc7662_s2_1(env):
    """RFC 7662 §2.1: the caller must authenticate: a public client, no
    credentials, or a wrong secret → 401 invalid_client."""
    d = env.d
    t = sign_in(d, "web", "alice", PW, SCOPE)
    tok = t["access_token"]
    assert_oauth_error(introspect(d, tok, "web", None), 401, "invalid_client")
    r = post(d, "/introspect", None, None, {"token": tok})
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers["WWW-Authenticate"].startswith("Basic")  # RFC 9110 §15.5.2: a 401 challenges
    assert_oauth_error(introspect(d, tok, "conf", "wrong-secret"), 401, "invalid_client")
    # credentials are checked first: a wrong secret without `token` is still 401
    assert_oauth_error(post(d, "/introspect", "conf", "wrong-secret", {"token_type_hint": "access_token"}),
                       401, "invalid_client")
    assert_oauth_error(introspect(d, tok, "conf2", ("post", "wrong-secret")), 401, "invalid_client")


# ---------------------------------------------------------------- refresh tokens


def test_refresh_token_introspection_rfc7662_s2_2(env):
    """RFC 7662 §2.2 / §4: a refresh token introspects (token_type
    "refresh_token", client_id, sub, scope, iss, exp, iat, jti) for its own
    client only; once rotated it is inactive and its successor active."""
    t = env.person()
    rt = t["refresh_token"]
    info = env.intro(rt, "conf")
    assert info["active"] is True
    assert info["token_type"] == "refresh_token"
    assert info["client_id"] == "conf"
    assert info["sub"] == claims(t["access_token"])["sub"]
    assert set(info["scope"].split()) == set(SCOPE.split())
    assert info["iss"] == env.d.issuer
    assert isinstance(info["exp"], int) and isinstance(info["iat"], int) and info["exp"] > info["iat"]
    assert isinstance(info["jti"], str)
    assert env.intro(rt, "stranger") == INACTIVE
    assert env.intro(rt, "conf2") == INACTIVE
    t1 = assert_token_ok(refresh(env.d, "conf", rt, env.auth("conf")))
    assert env.intro(rt, "conf") == INACTIVE
    assert env.intro(t1["refresh_token"], "conf")["active"] is True


# ---------------------------------------------------------------- RFC 9701


def test_jwt_introspection_response_rfc9701_s5(env):
    """RFC 9701 §4/§5: with Accept application/token-introspection+jwt the
    answer is a JWT (that Content-Type, typ token-introspection+jwt) signed
    with a key in /jwks, with iss, aud = the caller, iat, and
    token_introspection equal to the JSON answer; no-store."""
    d = env.d
    t = env.person()
    tok = t["access_token"]
    before = int(time.time())
    r = introspect(d, tok, "conf", env.auth("conf"), headers={"Accept": JWT_MEDIA})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0].strip() == JWT_MEDIA
    assert "no-store" in r.headers.get("Cache-Control", "").lower()
    header, jc = verify_jwcrypto(d, r.text.strip(), typ="token-introspection+jwt")
    assert header["alg"] != "none"
    assert jc["iss"] == d.issuer
    assert jc["aud"] == "conf" or jc["aud"] == ["conf"]
    assert before - 5 <= jc["iat"] <= int(time.time()) + 5
    assert jc["token_introspection"] == env.intro(tok, "conf")
    assert_active_matches(jc["token_introspection"], tok)
    # An invisible token: the JWT carries exactly {"active": false}.
    r = introspect(d, tok, "stranger", env.auth("stranger"), headers={"Accept": JWT_MEDIA})
    assert r.status_code == 200
    _, jc = verify_jwcrypto(d, r.text.strip(), typ="token-introspection+jwt")
    assert jc["aud"] == "stranger" or jc["aud"] == ["stranger"]
    assert jc["token_introspection"] == INACTIVE


# ---------------------------------------------------------------- revocation


def test_revoke_answers_200_for_anything_rfc7009_s2_2(env):
    """RFC 7009 §2.2: 200 for an unknown token, garbage, and an already
    revoked token; Cache-Control no-store."""
    t = env.person()
    for tok in ("garbage", "A" * 43, "a.b.c", "x" * 5000):
        env.revoke(tok, "conf")
    env.revoke(t["access_token"], "conf")
    env.revoke(t["access_token"], "conf")
    env.revoke(t["refresh_token"], "conf")
    env.revoke(t["refresh_token"], "conf", token_type_hint="refresh_token")


def test_revoke_access_token_rfc7009_s2_1(env):
    """RFC 7009 §2.1: the client revokes its access token (wrong hint or
    none) → inactive."""
    t1, t2 = env.person(), env.person()
    env.revoke(t1["access_token"], "conf", token_type_hint="refresh_token")
    env.revoke(t2["access_token"], "conf")
    assert env.intro(t1["access_token"], "conf") == INACTIVE
    assert env.intro(t2["access_token"], "conf") == INACTIVE


def test_another_clients_token_stays_active_rfc7009_s2_1(env):
    """RFC 7009 §2.1: the server verifies the token was issued to the
    requesting client; another client's revocation answers 200 and changes
    nothing (access token active, refresh token still rotates)."""
    t = env.person()
    env.revoke(t["access_token"], "stranger")
    env.revoke(t["refresh_token"], "stranger")
    env.revoke(t["access_token"], "conf2")
    env.revoke(t["refresh_token"], "conf2", token_type_hint="refresh_token")
    assert env.intro(t["access_token"], "conf")["active"] is True
    assert env.intro(t["refresh_token"], "conf")["active"] is True
    assert_token_ok(refresh(env.d, "conf", t["refresh_token"], env.auth("conf")))


def test_revoke_request_errors_rfc7009_s2_2_1(env):
    """RFC 7009 §2.2.1: a token_type_hint the server does not know →
    400 unsupported_token_type; missing token → 400 invalid_request
    (RFC 7009 §2.1); a wrong secret → 401 invalid_client. The token survives."""
    d = env.d
    t = env.person()
    for hint in ("id_token", "foo"):
        r = revoke(d, t["access_token"], "conf", env.auth("conf"), token_type_hint=hint)
        assert_oauth_error(r, 400, "unsupported_token_type")
    assert_oauth_error(post(d, "/revoke", "conf", env.auth("conf"), {}), 400, "invalid_request")
    assert_oauth_error(revoke(d, t["access_token"], "conf", "wrong-secret"), 401, "invalid_client")
    # RFC 7009 §2.1: credentials are validated first, before token and hint
    assert_oauth_error(post(d, "/revoke", "conf", "wrong-secret", {"token_type_hint": "access_token"}),
                       401, "invalid_client")
    assert_oauth_error(revoke(d, t["access_token"], "conf", "wrong-secret", token_type_hint="id_token"),
                       401, "invalid_client")
    assert env.intro(t["access_token"], "conf")["active"] is True


def test_revoke_refresh_token_revokes_family_rfc7009_s2_1(env):
    """RFC 7009 §2.1: revoking a refresh token revokes it and the access
    tokens of its grant: the refresh fails with invalid_grant, the access
    tokens are inactive."""
    t0 = env.person()
    t1 = assert_token_ok(refresh(env.d, "conf", t0["refresh_token"], env.auth("conf")))
    env.revoke(t1["refresh_token"], "conf")
    assert_oauth_error(refresh(env.d, "conf", t1["refresh_token"], env.auth("conf")), 400, "invalid_grant")
    assert env.intro(t1["refresh_token"], "conf") == INACTIVE
    assert env.intro(t0["access_token"], "conf") == INACTIVE
    assert env.intro(t1["access_token"], "conf") == INACTIVE


def test_cascade_depth_three_rfc7009_s2_1(env):
    """RFC 7009 §2.1 / RFC 8693: person token → X's exchange → Y's exchange.
    All active to their clients (and the final one to the API registered as
    its resource); after X revokes the person's refresh token every
    descendant is exactly {"active": false}."""
    person = env.person(X)
    b1 = env.exchange(X, person["access_token"], audience=Y)
    b2 = env.exchange(Y, b1["access_token"], audience=NOTES, task="T-3")
    pairs = [(person["access_token"], X), (b1["access_token"], X), (b1["access_token"], Y),
             (b2["access_token"], Y), (b2["access_token"], "notes-api")]
    for tok, caller in pairs:
        assert_active_matches(env.intro(tok, caller), tok)
    info = env.intro(b2["access_token"], "notes-api")
    assert info["act"] == {"sub": Y, "act": {"sub": X}} and info["task"] == "T-3"
    env.revoke(person["refresh_token"], X)
    for tok, caller in pairs:
        assert env.intro(tok, caller) == INACTIVE, caller
