"""Token exchange for agents: RFC 8693 §2.1 (request), §2.2 (response and
errors), §4.1 (`act`), §4.4 (`may_act`); RFC 9068 §2 (the issued at+jwt);
RFC 7009 / RFC 7662 for revocation reaching exchanged descendants.

deputy's policy (default deny): `deputy delegation allow --actor A
--audience T --scope S [--max-lifetime N] [--max-depth N] [--broker B]`.
Refusals of the presented tokens are `invalid_request`, a missing rule is
`invalid_target`, widening scope is `invalid_scope`, a wrong client is
`unauthorized_client`."""

import time

import pytest
import requests

from conftest import (ClientKey, Deputy, assert_oauth_error, assert_token_ok, b64url, b64url_json,
                      jwt_parts, sign_compact)
from flows import (AT_TYPE, ID_TYPE, INACTIVE, JWT_TYPE, RT_TYPE, TOKEN_EXCHANGE, add_client, add_user,
                   allow_delegation, claims, exchange, introspect_json, post, revoke, settings, sign_in,
                   verify_jwcrypto, verify_pyjwt)

PW = "correct horse battery staple"
SCOPE = "openid notes:read notes:write"
NOTES = "https://notes.example"
SHALLOW = "https://shallow.example"
X, Y, Z = "agent-x", "agent-y", "agent-z"
S, BROKER, NOT_BROKER = "svc-s", "broker", "not-broker"
AGENT_GRANTS = ("authorization_code", "refresh_token", "token-exchange")


def install(d: Deputy) -> dict:
    """Users, agents, brokers and rules shared by the tests."""
    for u in ("alice", "bob", "carol"):
        add_user(d, u, PW)
    c = {}
    c[X] = add_client(d, X, kind="agent", auth="client_secret_basic", grants=AGENT_GRANTS)
    c[Y] = add_client(d, Y, kind="agent", auth="client_secret_post", grants=("token-exchange",),
                      redirect_uris=(), scopes=())
    c[Z] = add_client(d, Z, kind="agent", auth="client_secret_basic", grants=AGENT_GRANTS)
    c[S] = add_client(d, S, kind="agent", auth="client_secret_basic",
                      grants=("authorization_code", "client_credentials"), scopes=("notes:read",),
                      audiences=("https://svc-s.example",))
    c[BROKER] = add_client(d, BROKER, kind="service", auth="client_secret_basic", grants=("token-exchange",),
                           redirect_uris=(), scopes=())
    c[NOT_BROKER] = add_client(d, NOT_BROKER, kind="service", auth="client_secret_basic",
                               grants=("token-exchange",), redirect_uris=(), scopes=())
    c["web"] = add_client(d, "web")  # public app
    c["webconf"] = add_client(d, "webconf", auth="client_secret_basic")  # no token-exchange grant
    allow_delegation(d, X, Y, ["notes:read", "notes:write"], max_lifetime=120, max_depth=1)
    allow_delegation(d, X, NOTES, ["notes:read"], max_lifetime=3600)
    allow_delegation(d, Y, NOTES, ["notes:read"], max_lifetime=60, max_depth=2)
    allow_delegation(d, Y, SHALLOW, ["notes:read"], max_depth=1)
    allow_delegation(d, S, NOTES, ["notes:read"], broker=BROKER)
    return c


class Env:
    def __init__(self, d: Deputy, c: dict):
        self.d, self.c = d, c

    def auth(self, client_id):
        """How each client authenticates."""
        secret = self.c[client_id]["client_secret"]
        return ("post", secret) if self.c[client_id]["auth_method"] == "client_secret_post" else secret

    def person(self, client_id=X, user="alice", scope=SCOPE) -> dict:
        return sign_in(self.d, client_id, user, PW, scope, client_auth=self.auth(client_id))

    def ex(self, client_id, subject_token, **kw):
        return exchange(self.d, client_id, self.auth(client_id), subject_token, **kw)

    def ok(self, client_id, subject_token, **kw) -> tuple[dict, dict]:
        r = self.ex(client_id, subject_token, **kw)
        body = assert_token_ok(r)
        return body, claims(body["access_token"])

    def introspect(self, token, client_id):
        return introspect_json(self.d, token, client_id, self.auth(client_id))


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir / "exchange", settings())
    c = install(d)
    d.start()
    yield Env(d, c)
    d.stop()


def refused(r, code="invalid_request", status=400):
    return assert_oauth_error(r, status, code)


# ---------------------------------------------------------------- the happy chain


def test_three_hop_chain_rfc8693_s4_1(env):
    """RFC 8693 §2.2.1 / §4.1 and RFC 9068 §2: person → agent X → sub-agent Y
    → API. Each issued token verifies against /jwks (jwcrypto and PyJWT), is
    at+jwt with sub = the person throughout, client_id = the requesting
    client, aud = the target, `act` nested with only `sub` members, scope
    and exp only ever shrinking, auth_time of the person, `task` copied; the
    response has issued_token_type, token_type Bearer, expires_in, scope and
    never a refresh_token."""
    d = env.d
    person = env.person()
    _, p = verify_jwcrypto(d, person["access_token"])
    assert p["client_id"] == X and p["aud"] == d.issuer

    # Hop 1: X acts for the person towards sub-agent Y.
    b1, _ = env.ok(X, person["access_token"], audience=Y, scope="notes:read notes:write")
    _, h1 = verify_jwcrypto(d, b1["access_token"])
    assert verify_pyjwt(d, b1["access_token"], audience=Y)["sub"] == p["sub"]
    assert b1["issued_token_type"] == AT_TYPE
    assert b1["token_type"] == "Bearer"
    assert "refresh_token" not in b1
    assert h1["sub"] == p["sub"]
    assert h1["aud"] == Y
    assert h1["client_id"] == X
    assert h1["act"] == {"sub": X}
    assert h1["auth_time"] == p["auth_time"]
    assert set(h1["scope"].split()) == {"notes:read", "notes:write"} == set(b1["scope"].split())
    assert h1["iss"] == d.issuer and isinstance(h1["jti"], str) and h1["jti"] != p["jti"]
    assert h1["exp"] - h1["iat"] == 120 == b1["expires_in"]
    assert h1["exp"] < p["exp"]

    # Hop 2: Y (the token is addressed to it) acts towards the notes API.
    b2, _ = env.ok(Y, b1["access_token"], resource=NOTES, task="ticket-42: summarise notes")
    _, h2 = verify_jwcrypto(d, b2["access_token"])
    assert verify_pyjwt(d, b2["access_token"], audience=NOTES)["sub"] == p["sub"]
    assert "refresh_token" not in b2
    assert b2["issued_token_type"] == AT_TYPE
    assert h2["sub"] == p["sub"]
    assert h2["aud"] == NOTES
    assert h2["client_id"] == Y
    assert h2["act"] == {"sub": Y, "act": {"sub": X}}
    assert h2["auth_time"] == p["auth_time"]
    assert h2["scope"] == "notes:read" == b2["scope"]
    assert h2["task"] == "ticket-42: summarise notes"
    assert h2["exp"] - h2["iat"] == 60 == b2["expires_in"]
    assert h2["exp"] < h1["exp"]

    # Y, the final token's client, introspects it and sees act and task.
    info = env.introspect(b2["access_token"], Y)
    assert info["active"] is True
    assert info["act"] == {"sub": Y, "act": {"sub": X}}
    assert info["task"] == "ticket-42: summarise notes"
    assert info["sub"] == p["sub"] and info["aud"] == NOTES


def test_requested_token_type_jwt_rfc8693_s2_2_1(env):
    """RFC 8693 §2.1/§2.2.1: requested_token_type jwt is honoured:
    issued_token_type is the jwt URI."""
    person = env.person()
    b, h = env.ok(X, person["access_token"], audience=NOTES, requested_token_type=JWT_TYPE)
    assert b["issued_token_type"] == JWT_TYPE
    assert h["aud"] == NOTES
    # And a subject typed as jwt is accepted too.
    b2, _ = env.ok(X, person["access_token"], subject_token_type=JWT_TYPE, audience=NOTES)
    assert b2["issued_token_type"] == AT_TYPE


def test_may_act_names_the_next_actor_rfc8693_s4_4(env):
    """RFC 8693 §4.4: the issued token carries may_act {"sub": VALUE}; only
    that party may exchange it next — Y succeeds when named, and gets
    invalid_request when another party is named."""
    person = env.person()
    b, h = env.ok(X, person["access_token"], audience=Y, may_act=Y)
    assert h["may_act"] == {"sub": Y}
    # introspection conveys it too (RFC 8693 §4.4 names it for introspection)
    assert env.introspect(b["access_token"], Y)["may_act"] == {"sub": Y}
    env.ok(Y, b["access_token"], audience=NOTES)
    b, h = env.ok(X, person["access_token"], audience=Y, may_act=Z)
    assert h["may_act"] == {"sub": Z}
    refused(env.ex(Y, b["access_token"], audience=NOTES))
    # may_act must be a client id (visible characters, at most 128)
    for bad in ("two words", "x" * 129):
        r = env.ex(X, person["access_token"], audience=Y, may_act=bad)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_request"), (bad, r.text)


# ---------------------------------------------------------------- broker pattern


def cc_token(env, client_id) -> str:
    r = post(env.d, "/token", client_id, env.auth(client_id), {"grant_type": "client_credentials"})
    return assert_token_ok(r)["access_token"]


def test_broker_pattern_rfc8693_s2_1(env):
    """RFC 8693 §2.1 actor_token: the broker named in the actor's rule
    presents the person's token and the actor's own client-credentials token;
    act names the actor, client_id the broker, exp never past the actor
    token's. A client that is not the named broker gets 400
    unauthorized_client."""
    person = env.person(S, scope="openid notes:read")
    actor = cc_token(env, S)
    a = claims(actor)
    assert a["sub"] == S == a["client_id"]
    b, h = env.ok(BROKER, person["access_token"], actor_token=actor, actor_token_type=AT_TYPE,
                  audience=NOTES)
    verify_jwcrypto(env.d, b["access_token"])
    assert h["act"] == {"sub": S}
    assert h["client_id"] == BROKER
    assert h["sub"] == claims(person["access_token"])["sub"]
    assert h["aud"] == NOTES
    assert h["scope"] == "notes:read"
    assert h["exp"] <= a["exp"]
    refused(env.ex(NOT_BROKER, person["access_token"], actor_token=actor, actor_token_type=AT_TYPE,
                   audience=NOTES), "unauthorized_client")


def test_actor_token_must_be_the_actors_own_rfc8693_s2_1(env):
    """RFC 8693 §2.1: an actor_token that is a person's token (not the actor
    service's own) is 400 invalid_request."""
    person = env.person(S, scope="openid notes:read")
    other_person = env.person(S, user="carol", scope="openid notes:read")
    refused(env.ex(BROKER, person["access_token"], actor_token=other_person["access_token"],
                   actor_token_type=AT_TYPE, audience=NOTES))


def test_actor_token_without_type_rfc8693_s2_1(env):
    """RFC 8693 §2.1: actor_token_type is REQUIRED with actor_token →
    400 invalid_request (and the reverse)."""
    person = env.person(S, scope="openid notes:read")
    actor = cc_token(env, S)
    refused(env.ex(BROKER, person["access_token"], actor_token=actor, audience=NOTES))
    refused(env.ex(BROKER, person["access_token"], actor_token_type=AT_TYPE, audience=NOTES))


# ---------------------------------------------------------------- client checks


def test_client_not_registered_or_public_rfc6749_s5_2(env):
    """RFC 6749 §5.2: a confidential client not registered for the grant,
    and a public client, get 400 unauthorized_client."""
    d = env.d
    person = env.person()
    refused(exchange(d, "webconf", env.c["webconf"]["client_secret"], person["access_token"], audience=NOTES),
            "unauthorized_client")
    refused(exchange(d, "web", None, person["access_token"], audience=NOTES), "unauthorized_client")


def test_failed_client_authentication_rfc6749_s5_2(env):
    """RFC 6749 §5.2: wrong secret or no authentication → 401 invalid_client."""
    d = env.d
    person = env.person()
    refused(exchange(d, X, "wrong-secret", person["access_token"], audience=Y), "invalid_client", 401)
    r = requests.post(d.token_endpoint, data={"grant_type": TOKEN_EXCHANGE,
                                              "subject_token": person["access_token"],
                                              "subject_token_type": AT_TYPE, "audience": Y}, timeout=10)
    refused(r, "invalid_client", 401)


# ---------------------------------------------------------------- policy refusals


def test_actor_without_rule_is_invalid_target_rfc8693_s2_2_2(env):
    """RFC 8693 §2.2.2: default deny — an actor with no rule at all gets
    400 invalid_target."""
    person = env.person(Z)
    refused(env.ex(Z, person["access_token"], audience=NOTES), "invalid_target")


def test_target_without_rule_is_invalid_target_rfc8693_s2_2_2(env):
    """RFC 8693 §2.2.2: a target the actor has no rule for → 400
    invalid_target (audience and resource alike)."""
    person = env.person()
    refused(env.ex(X, person["access_token"], audience="https://unknown.example"), "invalid_target")
    refused(env.ex(X, person["access_token"], resource="https://unknown.example/api"), "invalid_target")


def test_scope_widening_is_invalid_scope_rfc8693_s2_1(env):
    """RFC 8693 §2.1 `scope`: only within the subject token's scope AND the
    rule's. In the subject but not the rule, or in the rule but not the
    subject → 400 invalid_scope; omitted → the intersection."""
    full = env.person()
    refused(env.ex(X, full["access_token"], audience=NOTES, scope="notes:read notes:write"), "invalid_scope")
    _, h = env.ok(X, full["access_token"], audience=NOTES)
    assert h["scope"] == "notes:read"
    narrow = env.person(scope="openid notes:read")
    refused(env.ex(X, narrow["access_token"], audience=Y, scope="notes:write"), "invalid_scope")
    refused(env.ex(X, narrow["access_token"], audience=Y, scope="notes:read admin"), "invalid_scope")
    _, h = env.ok(X, narrow["access_token"], audience=Y)
    assert h["scope"] == "notes:read"


def test_lifetime_never_past_subject_token(env):
    """deputy's lifetime rule: exp = min(now + rule max, now +
    requested_lifetime, subject exp). With the rule allowing 3600 s, a huge
    requested_lifetime ends exactly at the subject token's exp; a short one
    is honoured exactly."""
    person = env.person()
    p = claims(person["access_token"])
    b, h = env.ok(X, person["access_token"], audience=NOTES, requested_lifetime="999999999")
    assert h["exp"] == p["exp"]
    assert b["expires_in"] == h["exp"] - h["iat"]
    b, h = env.ok(X, person["access_token"], audience=NOTES, requested_lifetime="30")
    assert h["exp"] - h["iat"] == 30 == b["expires_in"]
    # Default: the rule's maximum bounds it (Y→notes allows 60 s).
    b1, _ = env.ok(X, person["access_token"], audience=Y)
    b2, h2 = env.ok(Y, b1["access_token"], audience=NOTES, requested_lifetime="3600")
    assert h2["exp"] - h2["iat"] == 60


def test_token_not_addressed_to_actor_rfc8693_s2_1(env):
    """The actor must be the subject token's client_id or its aud: a
    person's token from another app, or X's token presented by Y, is 400
    invalid_request."""
    web = sign_in(env.d, "web", "alice", PW, SCOPE)
    refused(env.ex(X, web["access_token"], audience=NOTES))
    person = env.person()
    refused(env.ex(Y, person["access_token"], audience=NOTES))
    # X's token addressed to NOTES is not Y's to exchange either.
    b, _ = env.ok(X, person["access_token"], audience=NOTES)
    refused(env.ex(Y, b["access_token"], audience=NOTES))


def test_chain_deeper_than_rule_rfc8693_s4_1(env):
    """--max-depth: Y→shallow allows one actor; exchanging a token that
    already carries act {X} would make the chain two deep → 400
    invalid_request (while Y→notes, depth 2, succeeds)."""
    person = env.person()
    b1, _ = env.ok(X, person["access_token"], audience=Y)
    refused(env.ex(Y, b1["access_token"], audience=SHALLOW))
    env.ok(Y, b1["access_token"], audience=NOTES)


def test_request_shape_refusals_rfc8693_s2_1(env):
    """RFC 8693 §2.1/§2.2.2 → 400 invalid_request: a refresh token requested
    via requested_token_type, both audience and resource, no target, missing
    subject_token or subject_token_type, unknown subject_token_type, a task
    that is not short printable text."""
    person = env.person()
    at = person["access_token"]
    refused(env.ex(X, at, audience=NOTES, requested_token_type=RT_TYPE))
    refused(env.ex(X, at, audience=NOTES, requested_token_type=ID_TYPE))
    refused(env.ex(X, at, audience=NOTES, resource=NOTES))
    refused(env.ex(X, at))
    refused(env.ex(X, at, audience=NOTES, subject_token_type="urn:example:unknown"))
    refused(post(env.d, "/token", X, env.auth(X), {"grant_type": TOKEN_EXCHANGE, "subject_token_type": AT_TYPE,
                                                   "audience": NOTES}))
    refused(post(env.d, "/token", X, env.auth(X), {"grant_type": TOKEN_EXCHANGE, "subject_token": at,
                                                   "audience": NOTES}))
    refused(env.ex(X, at, audience=NOTES, task="line\nbreak"))
    refused(env.ex(X, at, audience=NOTES, task="x" * 300))
    refused(env.ex(X, at, audience=NOTES, task="pay \u202e001$"))  # right-to-left override


def test_a_task_in_any_script_is_carried_into_the_token(env):
    """deputy's `task`: 1-128 characters a person can read, any script."""
    body, claims = env.ok(X, env.person()["access_token"], audience=NOTES, task="Steuererklärung ✓")
    assert claims["task"] == "Steuererklärung ✓"


# ---------------------------------------------------------------- subject token refusals


def test_refresh_or_id_token_as_subject_rfc8693_s2_1(env):
    """RFC 8693 §2.1: the subject must be an access token deputy issued: a
    refresh token or an ID token is 400 invalid_request, whatever type is
    declared."""
    person = env.person()
    for tok in (person["refresh_token"], person["id_token"]):
        for typ in (AT_TYPE, JWT_TYPE, RT_TYPE, ID_TYPE):
            refused(env.ex(X, tok, subject_token_type=typ, audience=NOTES))


def test_garbage_subject_token_rfc8693_s2_2_2(env):
    """RFC 8693 §2.2.2: an unparseable or tampered subject token → 400 invalid_request."""
    person = env.person()
    refused(env.ex(X, "garbage", audience=NOTES))
    h, p, s = person["access_token"].split(".")
    pc = claims(person["access_token"])
    pc["scope"] = "notes:read notes:write admin"
    refused(env.ex(X, f"{h}.{b64url_json(pc)}.{s}", audience=NOTES))


def test_other_issuer_tokens_rfc8693_s2_2_2(env):
    """A subject token deputy did not sign → 400 invalid_request: an at+jwt
    signed with a foreign EC key under an unknown kid (copying a genuine
    token's claims and jti), the same under deputy's own kid, a genuine
    token with iss changed (keeping deputy's signature), and a foreign-key
    token claiming another iss."""
    d = env.d
    person = env.person()
    genuine = claims(person["access_token"])
    real_kid = jwt_parts(person["access_token"])[0]["kid"]
    key = ClientKey("ES256", kid="not-deputys-key")
    forged = sign_compact({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, genuine, key.jwk)
    refused(env.ex(X, forged, audience=NOTES))
    forged_kid = sign_compact({"alg": "ES256", "typ": "at+jwt", "kid": real_kid}, genuine, key.jwk)
    refused(env.ex(X, forged_kid, audience=NOTES))
    h, _, s = person["access_token"].split(".")
    refused(env.ex(X, f"{h}.{b64url_json({**genuine, 'iss': 'https://evil.example'})}.{s}", audience=NOTES))
    other_iss = sign_compact({"alg": "ES256", "typ": "at+jwt", "kid": key.kid},
                             {**genuine, "iss": "https://evil.example"}, key.jwk)
    refused(env.ex(X, other_iss, audience=NOTES))
    # The genuine one still works: the refusals were about the forgeries.
    env.ok(X, person["access_token"], audience=NOTES)


def test_revoked_subject_token_rfc7009_s2(env):
    """A subject token revoked at /revoke by its own client → 400
    invalid_request."""
    person = env.person()
    assert revoke(env.d, person["access_token"], X, env.auth(X)).status_code == 200
    refused(env.ex(X, person["access_token"], audience=NOTES))


def test_disabled_person_subject_token(env):
    """`deputy user disable` revokes the person's tokens: exchanging one →
    400 invalid_request; a descendant issued before is inactive."""
    person = env.person(user="bob")
    b1, _ = env.ok(X, person["access_token"], audience=Y)
    env.d.cli("user", "disable", "bob")
    refused(env.ex(X, person["access_token"], audience=NOTES))
    refused(env.ex(Y, b1["access_token"], audience=NOTES))
    assert env.introspect(b1["access_token"], X) == INACTIVE


def test_oversized_subject_token_is_refused_fast(env):
    """A ~60 KB subject token → 400 invalid_request in under a second; a
    body over 64 KiB → 413."""
    d = env.d
    kid = jwt_parts(env.person()["access_token"])[0]["kid"]
    big = (b64url_json({"alg": "ES256", "typ": "at+jwt", "kid": kid}) + "."
           + b64url_json({"iss": d.issuer, "pad": "p" * 44000}) + "." + b64url(b"s" * 64))
    assert 58_000 < len(big) < 62_000
    t = time.monotonic()
    r = env.ex(X, big, audience=NOTES)
    elapsed = time.monotonic() - t
    refused(r)
    assert elapsed < 1.0, elapsed
    t = time.monotonic()
    r = env.ex(X, "a" * 60_000, audience=NOTES)
    elapsed = time.monotonic() - t
    refused(r)
    assert elapsed < 1.0, elapsed
    r = env.ex(X, "a" * 70_000, audience=NOTES)
    assert r.status_code == 413, (r.status_code, r.text[:200])


def test_expired_subject_token(new_deputy):
    """DEPUTY_ACCESS_TOKEN_TTL=2: after 3 s the subject token has expired →
    400 invalid_request (it worked while fresh)."""
    d = new_deputy(settings(DEPUTY_ACCESS_TOKEN_TTL="2"))
    c = install(d)
    d.start()
    e = Env(d, c)
    person = e.person()
    e.ok(X, person["access_token"], audience=NOTES)
    time.sleep(3.0)
    refused(e.ex(X, person["access_token"], audience=NOTES))


# ---------------------------------------------------------------- revocation reaches descendants


def test_revoking_refresh_family_kills_descendants_rfc7009_s2_1(env):
    """RFC 7009 §2.1 / RFC 9700 §4.14.2: the issuing client revokes the
    person's refresh token → every exchanged descendant (X's and Y's)
    introspects inactive to its own client and can no longer be exchanged."""
    person = env.person()
    b1, _ = env.ok(X, person["access_token"], audience=Y)
    b2, _ = env.ok(Y, b1["access_token"], audience=NOTES)
    assert env.introspect(b1["access_token"], X)["active"] is True
    assert env.introspect(b2["access_token"], Y)["active"] is True
    assert revoke(env.d, person["refresh_token"], X, env.auth(X)).status_code == 200
    assert env.introspect(person["access_token"], X) == INACTIVE
    assert env.introspect(b1["access_token"], X) == INACTIVE
    assert env.introspect(b1["access_token"], Y) == INACTIVE
    assert env.introspect(b2["access_token"], Y) == INACTIVE
    refused(env.ex(Y, b1["access_token"], audience=NOTES))


def test_revoking_person_access_token_kills_descendants_rfc7009_s2_1(env):
    """RFC 7009 §2.1: the issuing client revokes the person's access token →
    every token exchanged from it introspects inactive."""
    person = env.person()
    b1, _ = env.ok(X, person["access_token"], audience=Y)
    b2, _ = env.ok(Y, b1["access_token"], audience=NOTES)
    other, _ = env.ok(X, person["access_token"], audience=NOTES)
    assert revoke(env.d, person["access_token"], X, env.auth(X)).status_code == 200
    assert env.introspect(b1["access_token"], X) == INACTIVE
    assert env.introspect(b2["access_token"], Y) == INACTIVE
    assert env.introspect(other["access_token"], X) == INACTIVE


def test_removing_an_actor_ends_what_it_holds_through_a_broker_rfc7009_s2_1(new_deputy):
    """RFC 7009 §2.1 (revoking ends derived tokens) applied to client removal:
    a delegation token held by the broker in which the removed service acts
    (`act.sub`) introspects inactive at once, the delegation rules naming the
    service are gone (`delegation list`), and a client registered again under
    the same id inherits no rule: its exchange is 400 invalid_target."""
    d = new_deputy(settings())
    c = install(d)
    d.start()
    e = Env(d, c)
    person = e.person(S, scope="openid notes:read")
    b, h = e.ok(BROKER, person["access_token"], actor_token=cc_token(e, S), actor_token_type=AT_TYPE,
                audience=NOTES)
    assert h["act"] == {"sub": S}
    assert e.introspect(b["access_token"], BROKER)["active"] is True
    out = d.cli("client", "remove", S)
    assert out["tokens_revoked"] >= 2 and out["rules_removed"] == 1, out
    assert e.introspect(b["access_token"], BROKER) == INACTIVE
    assert [r for r in d.cli("delegation", "list") if S in (r["actor"], r.get("broker"))] == []
    c[S] = add_client(d, S, kind="agent", auth="client_secret_basic",
                      grants=("authorization_code", "client_credentials"), scopes=("notes:read",),
                      audiences=("https://svc-s.example",))
    person = e.person(S, scope="openid notes:read")
    refused(e.ex(BROKER, person["access_token"], actor_token=cc_token(e, S), actor_token_type=AT_TYPE,
                 audience=NOTES), "invalid_target")


def test_delegation_list_and_remove_default_deny_rfc8693_s2_2_2(new_deputy):
    """RFC 8693 §2.2.2 invalid_target once the rule is gone (default deny):
    `delegation list` shows each rule with its limits; `delegation remove`
    by --actor/--audience or by id ends it at once for new exchanges, is
    refused (exit 1, one line) for an unknown rule, and both the grant and the
    removal of a rule are in the audit trail."""
    d = new_deputy(settings())
    c = install(d)
    d.start()
    e = Env(d, c)
    rules = {(r["actor"], r["audience"]): r for r in d.cli("delegation", "list")}
    r = rules[(X, NOTES)]
    assert r["scopes"] == ["notes:read"] and r["max_lifetime"] == 3600, r
    person = e.person()
    e.ok(X, person["access_token"], audience=NOTES)
    out = d.cli("delegation", "remove", "--actor", X, "--audience", NOTES)
    assert out == {"removed": True, "id": r["id"]}
    refused(e.ex(X, person["access_token"], audience=NOTES), "invalid_target")
    again = d.run("delegation", "remove", "--actor", X, "--audience", NOTES)
    assert again.returncode == 1 and again.stderr.strip().count("\n") == 0, again
    new = allow_delegation(d, X, NOTES, ["notes:read"])
    e.ok(X, person["access_token"], audience=NOTES)
    assert d.cli("delegation", "remove", new["id"])["removed"] is True
    refused(e.ex(X, person["access_token"], audience=NOTES), "invalid_target")
    removed = d.cli("audit", "--event", "delegation_removed")
    assert [(ev["rule_id"], ev["client_id"], ev["aud"]) for ev in removed] == \
        [(r["id"], X, NOTES), (new["id"], X, NOTES)], removed
    allowed = {ev["rule_id"] for ev in d.cli("audit", "--event", "delegation_allowed")}
    assert {r["id"], new["id"]} <= allowed
