"""Adversarial suite: attacks on every place deputy accepts a JWT and on
every endpoint. RFC 8725 (JWT BCP) §2-§3, RFC 7515 / 7519 processing rules,
RFC 7523 §3 (client assertions), RFC 8693 §2.1-§2.2 (subject/actor tokens),
RFC 7662 §2.2 (introspection never says why), RFC 6750 §3.1 (Bearer errors),
RFC 6749 §3.1 / §3.1.2 / §3.2 / §5.2 (parameters, redirects, errors),
RFC 6819 §4.4.1.5 / §5.1.4.1.3 / §5.2.3.5 (redirect and code attacks),
RFC 9700 §2.1 / §4.1 (exact redirect matching), §4.14 (refresh binding).

Every refusal is checked exactly (status, `error`, and for introspection the
exact body {"active": false}); nothing may ever answer 5xx. All traffic goes
to 127.0.0.1; every loop is bounded in count and time."""

from __future__ import annotations

import base64 as b64
import http.client
import json
import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests

from conftest import (FORM, JWT_BEARER, ClientKey, Deputy, LocalHTTP, assert_oauth_error, assert_token_ok,
                      assertion_claims, assertion_form, basic_auth, jwt_parts, make_assertion)
from flows import (AT_TYPE, ID_TYPE, INACTIVE, REDIRECT_URI, add_client, add_user, allow_delegation, authorize,
                   exchange, hidden_inputs, introspect, introspect_json, pkce_pair, redeem, refresh, revoke,
                   settings, sign_in)
from hardening import BYE, Target, forgeries, interleaved_medians

PW = "correct horse battery staple"
API = "https://api.example/"
NOTES = "https://notes.example"
S_AUD = "https://s-agent.example"
APP_CB = "https://app.example/cb"
AGENT = ("authorization_code", "refresh_token", "token-exchange")


# --------------------------------------------------------------------------
# One installation for the module
# --------------------------------------------------------------------------


class Env:
    def __init__(self, d: Deputy):
        self.d = d
        self.secrets: dict[str, str] = {}
        self.key = ClientKey("ES256", kid="jwtsvc-k1")

    def sec(self, cid: str) -> str:
        return self.secrets[cid]

    def cc(self, cid: str, **extra) -> requests.Response:
        return requests.post(self.d.token_endpoint, data={"grant_type": "client_credentials", **extra},
                             headers=basic_auth(cid, self.sec(cid)), timeout=10)

    def assertion(self, **over) -> str:
        return make_assertion(self.key, "jwtsvc", self.d.issuer, **over)

    def jwtsvc_token(self) -> str:
        r = requests.post(self.d.token_endpoint, data=assertion_form(self.assertion()), timeout=10)
        return assert_token_ok(r)["access_token"]

    def person(self, client_id: str, user: str = "alice", scope: str = "openid notes:read") -> dict:
        return sign_in(self.d, client_id, user, PW, scope, client_auth=self.sec(client_id))

    def admin_token(self) -> str:
        return assert_token_ok(self.cc("ops"))["access_token"]


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir / "adv", settings())
    e = Env(d)
    for u in ("alice", "bob"):
        add_user(d, u, PW)
    d.add_client("jwtsvc", "private_key_jwt", key=e.key, scopes=("read",), audiences=(API,))
    e.secrets["svc"] = add_client(d, "svc", kind="service", auth="client_secret_basic",
                                  grants=("client_credentials",), scopes=("read",), audiences=(API,),
                                  redirect_uris=())["client_secret"]
    e.secrets["agent-x"] = add_client(d, "agent-x", kind="agent", auth="client_secret_basic", grants=AGENT,
                                      scopes=("notes:read", "notes:write"))["client_secret"]
    e.secrets["s-agent"] = add_client(d, "s-agent", kind="agent", auth="client_secret_basic",
                                      grants=("authorization_code", "client_credentials"), scopes=("notes:read",),
                                      audiences=(S_AUD,))["client_secret"]
    e.secrets["broker"] = add_client(d, "broker", kind="service", auth="client_secret_basic",
                                     grants=("token-exchange",), scopes=(), redirect_uris=())["client_secret"]
    web = d.cli("client", "add", "--id", "web", "--kind", "app", "--auth", "client_secret_basic",
                "--redirect-uri", REDIRECT_URI, "--redirect-uri", APP_CB, "--post-logout-redirect-uri", BYE,
                "--scope", "notes:read", "--grant", "authorization_code", "--grant", "refresh_token")
    e.secrets["web"] = web["client_secret"]
    e.secrets["web2"] = add_client(d, "web2", auth="client_secret_basic")["client_secret"]
    e.secrets["ops"] = d.cli("client", "add", "--id", "ops", "--kind", "service", "--auth", "client_secret_basic",
                             "--scope", "deputy:admin", "--audience", d.issuer)["client_secret"]
    allow_delegation(d, "agent-x", NOTES, ["notes:read"])
    allow_delegation(d, "s-agent", NOTES, ["notes:read"], broker="broker")
    d.start()
    yield e
    d.stop()


def alive(d: Deputy):
    r = requests.get(d.url("/healthz"), timeout=5)
    assert r.status_code == 200, "deputy stopped answering"


def oauth_error(r: requests.Response) -> tuple[int, str | None]:
    try:
        return r.status_code, r.json().get("error")
    except ValueError:
        return r.status_code, None


# --------------------------------------------------------------------------
# 1. JWT attacks at every place deputy accepts a JWT
# --------------------------------------------------------------------------


def refused_invalid_client(r):
    return oauth_error(r) == (401, "invalid_client")


def refused_invalid_request(r):
    return oauth_error(r) == (400, "invalid_request")


def refused_inactive(r):
    return r.status_code == 200 and r.json() == INACTIVE


def refused_bearer(r):
    return (oauth_error(r) == (401, "invalid_token")
            and 'error="invalid_token"' in r.headers.get("WWW-Authenticate", ""))


def refused_page(r):
    return (r.status_code == 400 and "Location" not in r.headers
            and r.headers.get("Content-Type", "").startswith("text/html"))


class Place:
    def __init__(self, name, target, send, refused, control_ok, after=None, control_send=None):
        self.name, self.target, self.send, self.refused, self.control_ok = name, target, send, refused, control_ok
        self.after = after
        self.control_send = control_send or send


def jwt_places(e: Env, local: LocalHTTP) -> dict[str, Place]:
    d = e.d
    # The P-256 key (deputy's RSA key signs only RS256 clients' ID tokens).
    ec_keys = [k for k in d.jwks()["keys"] if k["kty"] == "EC"]
    assert len(ec_keys) == 1
    jw = ec_keys[0]

    assertion_target = Target({"alg": "ES256", "typ": "JWT", "kid": e.key.kid},
                              lambda: assertion_claims("jwtsvc", d.issuer), e.assertion,
                              e.key.public_dict(), local, real_key=e.key.jwk)

    def own(token: str) -> Target:
        h, c = jwt_parts(token)
        return Target(h, lambda: dict(c), lambda: token, jw, local)

    person = e.person("agent-x")
    s_person = e.person("s-agent")
    actor = assert_token_ok(e.cc("s-agent"))["access_token"]
    web_person = e.person("web")
    svc_token = e.jwtsvc_token()
    victim = e.jwtsvc_token()   # what forged assertions try to revoke
    admin = e.admin_token()

    def by_assertion(path, tok, **data):
        return requests.post(d.url(path), data={"client_assertion_type": JWT_BEARER, "client_assertion": tok,
                                                **data}, timeout=10)

    def ok_token(r):
        return r.status_code == 200 and "access_token" in r.json()

    def victim_still_active():
        r = by_assertion("/introspect", e.assertion(), token=victim)
        assert r.status_code == 200 and r.json()["active"] is True, \
            "a forged client assertion at /revoke revoked the token"

    places = [
        Place("client_assertion@/token", assertion_target,
              lambda tok: requests.post(d.token_endpoint, data=assertion_form(tok), timeout=10),
              refused_invalid_client, ok_token),
        Place("client_assertion@/introspect", assertion_target,
              lambda tok: by_assertion("/introspect", tok, token=svc_token),
              refused_invalid_client, lambda r: r.status_code == 200 and r.json().get("active") is True),
        Place("client_assertion@/revoke", assertion_target,
              lambda tok: by_assertion("/revoke", tok, token=victim),
              refused_invalid_client, lambda r: r.status_code == 200, after=victim_still_active,
              control_send=lambda tok: by_assertion("/revoke", tok, token=e.jwtsvc_token())),
        Place("subject_token@exchange", own(person["access_token"]),
              lambda tok: exchange(d, "agent-x", e.sec("agent-x"), tok, audience=NOTES),
              refused_invalid_request, ok_token),
        Place("actor_token@exchange", own(actor),
              lambda tok: exchange(d, "broker", e.sec("broker"), s_person["access_token"], actor_token=tok,
                                   actor_token_type=AT_TYPE, audience=NOTES),
              refused_invalid_request, ok_token),
        Place("token@/introspect", own(person["access_token"]),
              lambda tok: introspect(d, tok, "agent-x", e.sec("agent-x")),
              refused_inactive, lambda r: r.status_code == 200 and r.json().get("active") is True),
        Place("bearer@/userinfo", own(person["access_token"]),
              lambda tok: requests.get(d.url("/userinfo"), headers={"Authorization": f"Bearer {tok}"}, timeout=10),
              refused_bearer, lambda r: r.status_code == 200 and "sub" in r.json()),
        Place("bearer@/admin", own(admin),
              lambda tok: requests.get(d.url("/admin/tokens?limit=1"), headers={"Authorization": f"Bearer {tok}"},
                                       timeout=10),
              refused_bearer, lambda r: r.status_code == 200 and isinstance(r.json(), list)),
        Place("id_token_hint@/logout", own(web_person["id_token"]),
              lambda tok: requests.get(d.url("/logout"), params={"id_token_hint": tok, "state": "s",
                                                                "post_logout_redirect_uri": BYE},
                                       allow_redirects=False, timeout=10),
              refused_page, lambda r: r.status_code == 303 and r.headers.get("Location") == BYE + "?state=s"),
    ]
    return {p.name: p for p in places}


JWT_PLACES = ["client_assertion@/token", "client_assertion@/introspect", "client_assertion@/revoke",
              "subject_token@exchange", "actor_token@exchange", "token@/introspect", "bearer@/userinfo",
              "bearer@/admin", "id_token_hint@/logout"]


@pytest.mark.parametrize("place", JWT_PLACES)
def test_forged_jwts_are_refused_rfc8725_s2_s3(env, place):
    """RFC 8725 §2.1-§2.8 / §3.1-§3.10, RFC 7515 §4.1 and §5.2, RFC 7519 §7.2:
    at this place, a genuine token is accepted (control) and every forgery is
    refused with this place's answer — 401 invalid_client for client
    assertions (RFC 7523 §3, RFC 6749 §5.2), 400 invalid_request for
    subject/actor tokens (RFC 8693 §2.2.2), exactly {"active": false} for
    introspection (RFC 7662 §2.2), 401 invalid_token with WWW-Authenticate for
    Bearer tokens (RFC 6750 §3.1), a 400 page without redirect for
    id_token_hint (RP-Initiated Logout §2). Forgeries: alg none/None/NONE,
    HS256/384/512 keyed with the public key (JWK JSON, PEM), RS256/ES384/PS256
    headers over an EC signature, unknown and injected kid (path traversal,
    SQL), jku/x5u to a local server (which must receive zero requests),
    embedded jwk/x5c, crit, flipped/truncated/re-encoded signatures, another
    issuer, expired / nbf in the future, JWS JSON serialization, invalid
    base64url, 10 000 nested arrays. Never 5xx."""
    e = env
    with LocalHTTP({"keys": []}) as local:
        p = jwt_places(e, local)[place]
        local.body = {"keys": [p.target.public]}
        control = p.control_send(p.target.genuine())
        assert p.control_ok(control), f"control: genuine token not accepted: {control.status_code} {control.text[:300]}"
        failures = []
        tried = 0
        for name, token in forgeries(p.target):
            tried += 1
            r = p.send(token)
            if r.status_code >= 500 or not p.refused(r):
                failures.append(f"{name}: {r.status_code} {r.headers.get('Location', '')} {r.text[:160]!r}")
        assert local.count() == 0, f"deputy fetched attacker URLs: {local.requests}"
    assert tried >= 50, tried
    assert not failures, f"{len(failures)}/{tried} forgeries not refused at {place}:\n" + "\n".join(failures)
    alive(e.d)
    if p.after:
        p.after()


def test_expired_genuine_tokens_are_refused_everywhere_rfc7519_s4_1_4(new_deputy):
    """RFC 7519 §4.1.4 / RFC 8725 §3.10: deputy's own, genuinely signed but
    expired tokens (DEPUTY_ACCESS_TOKEN_TTL=1) are refused: as subject_token
    and actor_token (400 invalid_request, RFC 8693 §2.2.2), at introspection
    ({"active": false}, RFC 7662 §2.2), as Bearer at /userinfo and /admin
    (401 invalid_token, RFC 6750 §3.1)."""
    d = new_deputy(settings(DEPUTY_ACCESS_TOKEN_TTL="1"))
    add_user(d, "alice", PW)
    x = add_client(d, "agent-x", kind="agent", auth="client_secret_basic", grants=AGENT)["client_secret"]
    s = add_client(d, "s-agent", kind="agent", auth="client_secret_basic",
                   grants=("authorization_code", "client_credentials"), scopes=("notes:read",),
                   audiences=(S_AUD,))["client_secret"]
    b = add_client(d, "broker", kind="service", auth="client_secret_basic", grants=("token-exchange",),
                   scopes=(), redirect_uris=())["client_secret"]
    ops = d.cli("client", "add", "--id", "ops", "--kind", "service", "--auth", "client_secret_basic",
                "--scope", "deputy:admin", "--audience", d.issuer)["client_secret"]
    allow_delegation(d, "agent-x", NOTES, ["notes:read"])
    allow_delegation(d, "s-agent", NOTES, ["notes:read"], broker="broker")
    d.start()
    person = sign_in(d, "agent-x", "alice", PW, "openid notes:read", client_auth=x)["access_token"]
    s_person = sign_in(d, "s-agent", "alice", PW, "openid notes:read", client_auth=s)["access_token"]
    cc = {"grant_type": "client_credentials"}
    actor = assert_token_ok(requests.post(d.token_endpoint, data=cc, headers=basic_auth("s-agent", s)))["access_token"]
    admin = assert_token_ok(requests.post(d.token_endpoint, data=cc, headers=basic_auth("ops", ops)))["access_token"]
    latest = max(jwt_parts(t)[1]["exp"] for t in (person, s_person, actor, admin))
    deadline = time.monotonic() + 6
    while time.time() < latest + 1.2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert time.time() >= latest + 1
    assert_oauth_error(exchange(d, "agent-x", x, person, audience=NOTES), 400, "invalid_request")
    assert_oauth_error(exchange(d, "broker", b, s_person, actor_token=actor, actor_token_type=AT_TYPE,
                                audience=NOTES), 400, "invalid_request")
    assert introspect_json(d, person, "agent-x", x) == INACTIVE
    for path, tok in (("/userinfo", person), ("/admin/tokens", admin)):
        r = requests.get(d.url(path), headers={"Authorization": f"Bearer {tok}"}, timeout=10)
        assert refused_bearer(r), (path, r.status_code, r.headers, r.text[:200])


# --------------------------------------------------------------------------
# 2. Token confusion
# --------------------------------------------------------------------------


def test_id_token_where_an_access_token_belongs_rfc8725_s2_8(env):
    """RFC 8725 §2.8 / §3.11 (cross-JWT confusion), OIDC Core §2: an ID token
    is not an access token: /userinfo 401 invalid_token (RFC 6750 §3.1),
    introspection exactly {"active": false} (RFC 7662 §2.2), token exchange
    400 invalid_request whether typed as access token or as ID token
    (RFC 8693 §2.2.2), /admin 401 invalid_token."""
    e, d = env, env.d
    t = e.person("agent-x")
    idt = t["id_token"]
    r = requests.get(d.url("/userinfo"), headers={"Authorization": f"Bearer {idt}"}, timeout=10)
    assert refused_bearer(r), r.text
    assert introspect_json(d, idt, "agent-x", e.sec("agent-x")) == INACTIVE
    assert introspect_json(d, idt, "agent-x", e.sec("agent-x"), token_type_hint="access_token") == INACTIVE
    for typ in (AT_TYPE, ID_TYPE):
        assert_oauth_error(exchange(d, "agent-x", e.sec("agent-x"), idt, subject_token_type=typ, audience=NOTES),
                           400, "invalid_request")
    r = requests.get(d.url("/admin/tokens"), headers={"Authorization": f"Bearer {idt}"}, timeout=10)
    assert refused_bearer(r), r.text


def test_refresh_token_as_bearer_and_access_token_as_refresh_rfc6750_s3_1(env):
    """RFC 6750 §3.1 / RFC 6749 §1.5 (refresh tokens are for the token
    endpoint only): a refresh token as Bearer at /userinfo and /admin is
    401 invalid_token; an access token or an ID token as refresh_token is
    400 invalid_grant (RFC 6749 §5.2); an access token as a code too."""
    e, d = env, env.d
    t = e.person("web", scope="openid notes:read")
    for path in ("/userinfo", "/admin/tokens"):
        r = requests.get(d.url(path), headers={"Authorization": f"Bearer {t['refresh_token']}"}, timeout=10)
        assert refused_bearer(r), (path, r.text)
    for tok in (t["access_token"], t["id_token"]):
        assert_oauth_error(refresh(d, "web", tok, e.sec("web")), 400, "invalid_grant")
    assert_oauth_error(redeem(d, "web", t["access_token"], "x" * 43, e.sec("web")), 400, "invalid_grant")
    # The real refresh token still works (nothing above consumed it).
    assert_token_ok(refresh(d, "web", t["refresh_token"], e.sec("web")))


def test_other_audience_tokens_at_userinfo_rfc9068_s4(env):
    """RFC 9068 §4 / RFC 8707 §2: an access token addressed to another
    resource (a service token for the API, a delegation token for the notes
    API) is refused at /userinfo: 401 invalid_token."""
    e, d = env, env.d
    svc = assert_token_ok(e.cc("svc"))["access_token"]
    person = e.person("agent-x")
    deleg = assert_token_ok(exchange(d, "agent-x", e.sec("agent-x"), person["access_token"],
                                     audience=NOTES))["access_token"]
    for tok in (svc, deleg):
        r = requests.get(d.url("/userinfo"), headers={"Authorization": f"Bearer {tok}"}, timeout=10)
        assert refused_bearer(r), r.text


def test_one_clients_artifacts_presented_by_another_rfc6749_s4_1_3_s6(env):
    """RFC 6749 §4.1.3 (the code was issued to the authenticated client),
    §6 / RFC 9700 §4.14 (refresh tokens are bound to their client), RFC 7523
    §3 items 1-2 (iss/sub name the client) and RFC 6749 §2.3 (one
    authentication method per request): another client's code and refresh
    token → 400 invalid_grant and no token; an assertion for jwtsvc sent as
    another client_id, or signed by jwtsvc's key claiming to be svc → 401
    invalid_client; an assertion plus Basic → 400 invalid_request."""
    e, d = env, env.d
    t = e.person("web", scope="openid notes:read")
    r = refresh(d, "web2", t["refresh_token"], e.sec("web2"))
    body = assert_oauth_error(r, 400, "invalid_grant")
    assert "refresh_token" not in body
    code, verifier = authorize(d, "web", "alice", PW, "openid notes:read")
    assert_oauth_error(redeem(d, "web2", code, verifier, e.sec("web2")), 400, "invalid_grant")
    assert_oauth_error(d.token(assertion_form(e.assertion(), client_id="svc")), 401, "invalid_client")
    forged = make_assertion(e.key, "svc", d.issuer)  # jwtsvc's key, claims to be svc
    assert_oauth_error(d.token(assertion_form(forged)), 401, "invalid_client")
    assert_oauth_error(d.token(assertion_form(e.assertion()), headers=basic_auth("svc", e.sec("svc"))),
                       400, "invalid_request")


# --------------------------------------------------------------------------
# 3. Redirect URI tricks
# --------------------------------------------------------------------------

REDIRECT_TRICKS = [
    ("suffix-host", "https://app.example/cb.evil.com"),
    ("dot-segments", "https://app.example/cb/../evil"),
    ("encoded-dot-segments", "https://app.example/cb/%2E%2E/evil"),
    ("userinfo-at-evil", "https://app.example@evil.com/cb"),
    ("userinfo-added", "https://attacker:pw@app.example/cb"),
    ("encoded-slash", "https://app.example%2Fcb"),
    ("encoded-slash-path", "https://app.example/cb%2F..%2Fevil"),
    ("encoded-at", "https://evil.com%2F@app.example/cb"),
    ("backslash", "https://app.example\\@evil.com/cb"),
    ("homoglyph-cyrillic-a", "https://\u0430pp.example/cb"),
    ("homoglyph-fullwidth-slash", "https://app.example\uff0fcb"),
    ("punycode", "https://xn--pp-8kc.example/cb"),
    ("javascript", "javascript:alert(document.domain)//https://app.example/cb"),
    ("javascript-newline", "javascript://app.example/cb%0aalert(1)"),
    ("data", "data:text/html,<script>alert(1)</script>"),
    ("scheme-relative", "//evil.com/cb"),
    ("http-downgrade", "http://app.example/cb"),
    ("trailing-slash", "https://app.example/cb/"),
    ("extra-query", "https://app.example/cb?next=https://evil.com"),
    ("fragment", "https://app.example/cb#x"),
    ("nul", "https://app.example/cb\x00.evil.com"),
    ("leading-space", " https://app.example/cb"),
    ("port", "https://app.example:8443/cb"),
]


def authorize_params(**over) -> dict:
    _, challenge = pkce_pair()
    p = {"response_type": "code", "client_id": "web", "redirect_uri": APP_CB, "scope": "openid",
         "state": "st", "code_challenge": challenge, "code_challenge_method": "S256"}
    p.update(over)
    return p


@pytest.mark.parametrize("uri", [u for _, u in REDIRECT_TRICKS], ids=[n for n, _ in REDIRECT_TRICKS])
def test_redirect_uri_tricks_rfc9700_s4_1_3(env, uri):
    """RFC 9700 §2.1 / §4.1.3 (exact string matching), RFC 6749 §3.1.2.4 and
    RFC 6819 §4.4.1.5 / §5.2.3.5: a redirect_uri that is not exactly a
    registered one gets a 400 page for the person — no Location header, no
    code — even though the client and everything else are valid."""
    d = env.d
    r = requests.get(d.url("/authorize"), params=authorize_params(redirect_uri=uri), allow_redirects=False,
                     timeout=10)
    assert refused_page(r), (r.status_code, r.headers.get("Location"), r.text[:200])
    assert "code=" not in r.text


@pytest.mark.parametrize("order", ["registered-first", "evil-first"])
def test_redirect_uri_parameter_pollution_rfc6749_s3_1(env, order):
    """RFC 6749 §3.1 (parameters MUST NOT be included more than once) and
    RFC 6749 §3.1.2.4: two redirect_uri parameters → 400 page, no Location,
    whatever the order."""
    d = env.d
    base = authorize_params()
    del base["redirect_uri"]
    pair = [APP_CB, "https://evil.example/cb"]
    if order == "evil-first":
        pair.reverse()
    qs = urlencode(base) + "".join("&redirect_uri=" + quote(u, safe="") for u in pair)
    r = requests.get(d.url("/authorize?" + qs), allow_redirects=False, timeout=10)
    assert refused_page(r), (r.status_code, r.headers.get("Location"), r.text[:200])


def test_registered_redirect_control(env):
    """Control for the redirect tests: the exact registered URI is accepted
    (RFC 6749 §3.1.2.3) — the login page, 200."""
    r = requests.get(env.d.url("/authorize"), params=authorize_params(), allow_redirects=False, timeout=10)
    assert r.status_code == 200 and 'name="password"' in r.text, r.text[:200]


# --------------------------------------------------------------------------
# 4. Parameter pollution and where parameters are read from
# --------------------------------------------------------------------------


def raw_token(d: Deputy, body: str | bytes, headers: dict | None = None, path: str = "/token") -> requests.Response:
    return requests.post(d.url(path), data=body, headers={"Content-Type": FORM, **(headers or {})}, timeout=10)


@pytest.mark.parametrize("param", ["grant_type", "client_id", "code", "scope", "redirect_uri", "code_verifier"])
@pytest.mark.parametrize("same", [True, False], ids=["same-value", "different-value"])
def test_duplicate_parameters_at_token_rfc6749_s3_2(env, param, same):
    """RFC 6749 §3.2 / §3.1: request parameters MUST NOT be included more
    than once → 400 invalid_request (RFC 6749 §5.2), whether the copies agree
    or not; the code is not consumed by the refused request."""
    e, d = env, env.d
    code, verifier = authorize(d, "web", "alice", PW, "openid notes:read")
    form = [("grant_type", "authorization_code"), ("client_id", "web"), ("code", code),
            ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier), ("scope", "openid")]
    value = dict(form)[param]
    form.append((param, value if same else value + "x"))
    assert_oauth_error(raw_token(d, urlencode(form), basic_auth("web", e.sec("web"))), 400, "invalid_request")
    # The code was not consumed: the well-formed request still succeeds.
    assert_token_ok(redeem(d, "web", code, verifier, e.sec("web")))


def test_duplicate_parameters_client_credentials_rfc6749_s3_2(env):
    """RFC 6749 §3.2: duplicate grant_type / scope / client_id in a client
    credentials request → 400 invalid_request."""
    e, d = env, env.d
    auth = basic_auth("svc", e.sec("svc"))
    for body in ("grant_type=client_credentials&grant_type=client_credentials",
                 "grant_type=client_credentials&grant_type=authorization_code",
                 "grant_type=client_credentials&scope=read&scope=read",
                 "grant_type=client_credentials&client_id=svc&client_id=svc"):
        assert_oauth_error(raw_token(d, body, auth), 400, "invalid_request")


def test_duplicate_client_id_at_authorize_rfc6749_s4_1_2_1(env):
    """RFC 6749 §3.1 / §4.1.2.1: a repeated client_id means the client is not
    known for sure: a 400 page, never a redirect."""
    d = env.d
    p = authorize_params()
    qs = urlencode(p) + "&" + urlencode({"client_id": p["client_id"]})
    r = requests.get(d.url("/authorize?" + qs), allow_redirects=False, timeout=10)
    assert refused_page(r), (r.status_code, r.headers.get("Location"), r.text[:200])


@pytest.mark.parametrize("param", ["scope", "response_type", "state", "code_challenge", "code_challenge_method"])
def test_duplicate_parameters_at_authorize_rfc6749_s3_1(env, param):
    """RFC 6749 §3.1: a repeated authorization parameter is invalid_request;
    once client_id and redirect_uri are each sent once and valid, §4.1.2.1
    sends it back to the client: 303 with error, iss (RFC 9207 §2) and state
    unless state itself was the repeated one; never a code."""
    d = env.d
    p = authorize_params()
    qs = urlencode(p) + "&" + urlencode({param: p[param]})
    r = requests.get(d.url("/authorize?" + qs), allow_redirects=False, timeout=10)
    assert r.status_code == 303, (r.status_code, r.text[:200])
    loc = r.headers["Location"]
    assert loc.split("?")[0] == APP_CB, loc
    q = parse_qs(urlsplit(loc).query)
    assert q.get("error") == ["invalid_request"] and "code" not in q, q
    assert q.get("iss") == [d.issuer], q
    assert q.get("state") == (None if param == "state" else ["st"]), q


def test_query_string_is_not_read_at_token_rfc6749_s3_2_s2_3_1(env):
    """RFC 6749 §3.2 (POST, form body) and §2.3.1 (client credentials in the
    request body or Basic, NOT in the request URI): client_secret in the
    query string never authenticates (401 invalid_client); grant_type or
    code only in the query string are missing (400 invalid_request); a code
    named only in the query string is not consumed."""
    e, d = env, env.d
    q = urlencode({"client_id": "svc", "client_secret": e.sec("svc")})
    r = requests.post(d.url("/token?" + q), data={"grant_type": "client_credentials"}, timeout=10)
    assert_oauth_error(r, 401, "invalid_client")
    r = requests.post(d.url("/token?" + q), data={"grant_type": "client_credentials", "client_id": "svc"},
                      timeout=10)
    assert_oauth_error(r, 401, "invalid_client")
    r = requests.post(d.url("/token?grant_type=client_credentials"), data={"scope": "read"},
                      headers=basic_auth("svc", e.sec("svc")), timeout=10)
    assert_oauth_error(r, 400, "invalid_request")
    code, verifier = authorize(d, "web", "alice", PW, "openid notes:read")
    r = requests.post(d.url("/token?" + urlencode({"code": code})),
                      data={"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI,
                            "code_verifier": verifier},
                      headers=basic_auth("web", e.sec("web")), timeout=10)
    assert_oauth_error(r, 400, "invalid_request")
    assert_token_ok(redeem(d, "web", code, verifier, e.sec("web")))


# --------------------------------------------------------------------------
# 5. Oversized, nested, slow
# --------------------------------------------------------------------------


def test_body_over_64_kib_is_413_rfc6749_s5_2(env):
    """deputy's documented limit (README: bodies over 64 KiB get 413 before
    parsing; RFC 9110 §15.5.14): with Content-Length and chunked, at /token,
    /introspect and /revoke → 413 with an RFC 6749 §5.2 JSON error
    (invalid_request); nothing is issued."""
    e, d = env, env.d
    big = "grant_type=client_credentials&pad=" + "x" * (66 * 1024)
    auth = basic_auth("svc", e.sec("svc"))
    for path in ("/token", "/introspect", "/revoke"):
        r = raw_token(d, big, auth, path)
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert r.json().get("error") == "invalid_request", r.text

    def chunks():
        yield b"grant_type=client_credentials&pad="
        for _ in range(70):
            yield b"y" * 1024

    r = requests.post(d.token_endpoint, data=chunks(), headers={"Content-Type": FORM, **auth}, timeout=10)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    alive(d)


def test_login_body_over_64_kib_is_413_rfc9110_s15_5_14(env):
    """README (form endpoints: bodies over 64 KiB get 413 before parsing) /
    RFC 9110 §15.5.14: the login form with a genuine browser session, CSRF
    token and interaction, padded past 64 KiB → 413, and no session is
    created (no deputy_session cookie)."""
    d = env.d
    b = requests.Session()
    page = b.get(d.url("/authorize"), params=authorize_params(), allow_redirects=False, timeout=10)
    fields = hidden_inputs(page.text)
    fields.update(username="alice", password=PW, pad="p" * (70 * 1024))
    r = b.post(d.url("/login"), data=fields, allow_redirects=False, timeout=10)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert "Set-Cookie" not in r.headers or "deputy_session" not in r.headers["Set-Cookie"]
    alive(d)


def test_huge_scope_is_invalid_scope_rfc6749_s3_3(env):
    """RFC 6749 §3.3 / §5.2: a 60 KB scope (one token, and 20 000 tokens)
    within the body limit → 400 invalid_scope, answered promptly."""
    e, d = env, env.d
    for scope in ("s" * 60000, "ab " * 20000):
        t0 = time.monotonic()
        r = e.cc("svc", scope=scope)
        assert time.monotonic() - t0 < 5
        assert_oauth_error(r, 400, "invalid_scope")


def b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while True:
        s = digits[n % 36] + s
        n //= 36
        if n == 0:
            return s


def test_ten_thousand_parameters_rfc6749_s3_2(env):
    """RFC 6749 §3.2: "The authorization server MUST ignore unrecognized
    request parameters" — 10 000 distinct unknown parameters within 64 KiB
    are answered promptly (< 5 s) as if absent (200 with a token); the same
    flood with one parameter repeated is 400 invalid_request (§3.2: no
    parameter more than once). Never 5xx."""
    e, d = env, env.d
    junk = "&".join(f"{b36(i)}=" for i in range(10, 10010))
    body = "grant_type=client_credentials&" + junk
    assert len(body) < 64 * 1024
    auth = basic_auth("svc", e.sec("svc"))
    t0 = time.monotonic()
    r = raw_token(d, body, auth)
    assert time.monotonic() - t0 < 5
    assert_token_ok(r)
    assert_oauth_error(raw_token(d, body + "&zzzz=1&zzzz=2", auth), 400, "invalid_request")


def test_100_kb_header_rfc9110_s15_5_20(env):
    """RFC 9110 §15.5.20 / §5.4 (a server may refuse large header fields with
    431, or accept them): a 100 KB header gets a prompt, non-5xx answer at
    /healthz and /token, and the server keeps answering. Observed with
    deputy (actix-web): accepted — 200 at /healthz, normal OAuth answers at
    /token."""
    e, d = env, env.d
    big = {"X-Padding": "a" * 100_000}
    seen = []
    for method, path, kw in (("GET", "/healthz", {}),
                             ("POST", "/token", {"data": {"grant_type": "client_credentials"},
                                                 "headers": {**big, **basic_auth("svc", e.sec("svc"))}})):
        kw.setdefault("headers", big)
        t0 = time.monotonic()
        try:
            r = requests.request(method, d.url(path), timeout=10, **kw)
            status = r.status_code
        except requests.ConnectionError:
            status = "closed"
        seen.append((path, status))
        assert time.monotonic() - t0 < 10
        assert status == "closed" or status < 500, seen
    alive(d)


@pytest.mark.engine_independent
def test_slowloris_is_cut_off_rfc6819_s4_4_1_11(env):
    """RFC 6819 §4.4.1.11 / §5.1.4.1 (resource exhaustion): clients that send
    their headers one byte per second are cut off (408 or close) within 10 s
    (deputy's client request timeout is 5 s), while other clients keep
    getting prompt answers (< 2 s each) the whole time."""
    d = env.d
    n = 5
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=2)
        s.settimeout(0.05)
        socks.append(s)
    request = b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    closed_after: dict[int, float] = {}
    answers: list[tuple[int, float]] = []
    stop = threading.Event()

    def others():
        while not stop.is_set() and len(answers) < 40:
            t0 = time.monotonic()
            try:
                st = requests.get(d.url("/healthz"), timeout=5).status_code
            except requests.RequestException:
                st = 0
            answers.append((st, time.monotonic() - t0))
            stop.wait(0.4)

    th = threading.Thread(target=others, daemon=True)
    th.start()
    t0 = time.monotonic()
    i = 0
    try:
        while len(closed_after) < n and time.monotonic() - t0 < 12:
            for k, s in enumerate(socks):
                if k in closed_after:
                    continue
                try:
                    s.send(request[i % len(request):i % len(request) + 1])
                except OSError:
                    closed_after[k] = time.monotonic() - t0
                    continue
                try:
                    data = s.recv(4096)
                    if data == b"" or data.startswith(b"HTTP/1.1 408"):
                        closed_after[k] = time.monotonic() - t0
                except (socket.timeout, BlockingIOError):
                    pass
                except OSError:
                    closed_after[k] = time.monotonic() - t0
            i += 1
            time.sleep(1.0)
    finally:
        stop.set()
        th.join(timeout=6)
        for s in socks:
            s.close()
    assert len(closed_after) == n, f"slow connections still open after 12 s: {n - len(closed_after)}"
    assert max(closed_after.values()) <= 10.5, closed_after
    assert answers and all(st == 200 and dt < 2 for st, dt in answers), answers


@pytest.mark.engine_independent
def test_slow_body_is_cut_off_rfc6819_s4_4_1_11(env):
    """RFC 6819 §4.4.1.11 (resource exhaustion): complete headers, then a
    form body dribbled one byte every 2 s, at /token and /login: answered
    408 (or closed) within 15 s — the body has 10 s to arrive — instead of
    holding the connection for as long as the client likes. Both paths
    dribble at once (each has its own connection and deadline)."""
    d = env.d

    def dribble(path):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=20)
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n").encode())
        s.settimeout(0.1)
        t0 = time.monotonic()
        answer = None
        try:
            while time.monotonic() - t0 < 15 and answer is None:
                try:
                    s.send(b"a")
                except OSError:
                    answer = b""
                    break
                end = time.monotonic() + 2
                while time.monotonic() < end and answer is None:
                    try:
                        answer = s.recv(4096)
                    except (socket.timeout, BlockingIOError):
                        pass
                    except OSError:
                        answer = b""
        finally:
            s.close()
        return answer, time.monotonic() - t0

    paths = ("/token", "/login")
    with ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(dribble, paths))
    for path, (answer, took) in zip(paths, results):
        assert answer is not None, f"{path}: still open after {took:.1f} s"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), (path, answer[:100])
        assert 9 <= took <= 15, (path, took)


# --------------------------------------------------------------------------
# 6. Invalid encodings
# --------------------------------------------------------------------------

BAD_UTF8 = [("overlong-slash", "%C0%AF"), ("invalid-byte", "%FF"), ("lone-continuation", "%80"),
            ("surrogate", "%ED%A0%80"), ("truncated-sequence", "%E2%82")]
BAD_OTHER = [("bad-percent", "%zz"), ("lone-percent", "%"), ("half-percent", "%4"), ("nul", "%00"),
             ("nul-inside", "read%00evil")]


@pytest.mark.parametrize("enc", [v for _, v in BAD_UTF8], ids=[n for n, _ in BAD_UTF8])
def test_invalid_utf8_is_invalid_request_rfc6749_s5_2(env, enc):
    """RFC 6749 Appendix B (parameters are UTF-8) / §5.2: percent-encoded
    invalid UTF-8 (overlong, stray bytes, surrogates, truncated) in any
    parameter — and raw invalid bytes — is 400 invalid_request at /token,
    /introspect and /revoke; a 400 page at /authorize. Never 5xx."""
    e, d = env, env.d
    auth = basic_auth("svc", e.sec("svc"))
    for body in (f"grant_type=client_credentials&scope={enc}", f"grant_type={enc}",
                 f"grant_type=client_credentials&resource={enc}"):
        assert_oauth_error(raw_token(d, body, auth), 400, "invalid_request")
    assert_oauth_error(raw_token(d, f"token={enc}", auth, "/introspect"), 400, "invalid_request")
    assert_oauth_error(raw_token(d, f"token={enc}", auth, "/revoke"), 400, "invalid_request")
    raw = bytes.fromhex(enc.replace("%", ""))
    assert_oauth_error(raw_token(d, b"grant_type=client_credentials&scope=" + raw, auth), 400, "invalid_request")
    r = requests.get(d.url("/authorize?" + urlencode(authorize_params()) + "&nonce=" + enc), allow_redirects=False,
                     timeout=10)
    assert refused_page(r), (r.status_code, r.headers.get("Location"), r.text[:200])


@pytest.mark.parametrize("enc", [v for _, v in BAD_OTHER], ids=[n for n, _ in BAD_OTHER])
def test_bad_percent_encoding_and_nul_rfc6749_s5_2(env, enc):
    """RFC 6749 §5.2 / RFC 3986 §2.1: malformed percent-encoding and NUL
    bytes never produce a token or a 5xx: in scope → 400 (invalid_request or
    invalid_scope), in grant_type → 400 (invalid_request or
    unsupported_grant_type), as client_id with a secret → 401
    invalid_client, as token at /introspect → 200 {"active": false} or 400
    invalid_request; at /authorize → a 400 page without redirect."""
    e, d = env, env.d
    auth = basic_auth("svc", e.sec("svc"))
    assert oauth_error(raw_token(d, f"grant_type=client_credentials&scope={enc}", auth)) in \
        {(400, "invalid_request"), (400, "invalid_scope")}
    assert oauth_error(raw_token(d, f"grant_type={enc}", auth)) in \
        {(400, "invalid_request"), (400, "unsupported_grant_type")}
    r = raw_token(d, f"grant_type=client_credentials&client_id={enc}&client_secret={e.sec('svc')}")
    assert oauth_error(r) in {(401, "invalid_client"), (400, "invalid_request")}, r.text
    r = raw_token(d, f"token={enc}", auth, "/introspect")
    assert (r.status_code == 200 and r.json() == INACTIVE) or oauth_error(r) == (400, "invalid_request"), r.text
    r = requests.get(d.url("/authorize?" + urlencode(authorize_params()) + "&client_id=" + enc),
                     allow_redirects=False, timeout=10)
    assert refused_page(r), (r.status_code, r.headers.get("Location"), r.text[:200])


def test_bad_basic_credentials_encoding_rfc6749_s2_3_1(env):
    """RFC 6749 §2.3.1 (id and secret are form-urlencoded inside Basic) /
    RFC 7617 §2: malformed Basic credentials — not base64, no colon, bad
    percent-encoding, invalid UTF-8, NUL — are 401 invalid_client (or 400
    invalid_request for an unparseable header), never a token, never 5xx."""
    e, d = env, env.d
    values = ["Basic !!!notbase64", "Basic " + b64.b64encode(b"no-colon").decode(),
              "Basic " + b64.b64encode(b"%zz:" + e.sec("svc").encode()).decode(),
              "Basic " + b64.b64encode(b"svc\xff:" + e.sec("svc").encode()).decode(),
              "Basic " + b64.b64encode(b"svc%00:" + e.sec("svc").encode()).decode(),
              "Basic " + b64.b64encode(b"svc:" + e.sec("svc").encode() + b"%00").decode(),
              "Basic", "Basic  ", "Bearer " + e.sec("svc")]
    for v in values:
        r = requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                          headers={"Authorization": v}, timeout=10)
        assert oauth_error(r) in {(401, "invalid_client"), (400, "invalid_request")}, (v, r.status_code, r.text)


# --------------------------------------------------------------------------
# 7. SQL-injection-shaped identifiers
# --------------------------------------------------------------------------

SQLI = ["' OR '1'='1", "'; DROP TABLE tokens;--", '" OR ""="', "1' UNION SELECT jti FROM tokens--",
        "%' OR 1=1 --", "admin'--", "x') OR ('a'='a"]


def page_text(r: requests.Response) -> str:
    """An HTML answer without its per-request values (hidden form fields)."""
    text = re.sub(r'(name="(?:interaction|csrf)" value=")[^"]*"', r'\1"', r.text)
    return text


class Probe:
    """One identifier slot: send(value) -> comparable answer."""

    def __init__(self, name, send, plain, answer, shaped=None):
        self.name, self.send, self.plain, self.answer = name, send, plain, answer
        self.shaped = shaped or SQLI


def sqli_probes(e: Env) -> list[Probe]:
    d = e.d
    admin = {"Authorization": f"Bearer {e.admin_token()}"}
    svc = basic_auth("svc", e.sec("svc"))

    def js(r):
        return r.status_code, r.json(), r.headers.get("WWW-Authenticate")

    def page(r):
        return r.status_code, "Location" in r.headers, page_text(r)

    def login(user):
        s = requests.Session()
        r = s.get(d.url("/authorize"), params=authorize_params(), allow_redirects=False, timeout=10)
        f = hidden_inputs(r.text)
        f.update(username=user, password="wrong password 123")
        return s.post(d.url("/login"), data=f, allow_redirects=False, timeout=10)

    def login_answer(r):
        return r.status_code, "Location" in r.headers, page_text(r)

    uri_sqli = [API + "'OR'1'='1'--", "https://x.example/';DROP%20TABLE%20tokens;--", NOTES + "/')OR('a'='a"]
    person = e.person("agent-x")
    return [
        Probe("client_id@basic", lambda v: requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                                                         headers=basic_auth(v, "s3cret-" + "x" * 20), timeout=10),
              "no-such-client", js),
        Probe("client_id@post", lambda v: requests.post(d.token_endpoint, data={
            "grant_type": "client_credentials", "client_id": v, "client_secret": "s3cret"}, timeout=10),
              "no-such-client", js),
        Probe("client_id@authorize", lambda v: requests.get(d.url("/authorize"), params=authorize_params(client_id=v),
                                                            allow_redirects=False, timeout=10),
              "no-such-client", page),
        Probe("username@login", login, "no-such-user", login_answer),
        Probe("jti@/admin/tokens/{jti}", lambda v: requests.get(d.url("/admin/tokens/" + quote(v, safe="")),
                                                                 headers=admin, timeout=10), "no-such-jti", js),
        Probe("sub@/admin/tokens", lambda v: requests.get(d.url("/admin/tokens"), params={"sub": v}, headers=admin,
                                                          timeout=10), "no-such-sub", js),
        Probe("jti@/admin/revoke", lambda v: requests.post(d.url("/admin/revoke"), json={"jti": v}, headers=admin,
                                                           timeout=10), "no-such-jti", js),
        Probe("actor@/admin/audit", lambda v: requests.get(d.url("/admin/audit"), params={"actor": v},
                                                           headers=admin, timeout=10), "no-such-actor", js),
        Probe("token@/introspect", lambda v: introspect(d, v, "svc", e.sec("svc")), "no-such-token", js),
        Probe("token@/revoke", lambda v: revoke(d, v, "svc", e.sec("svc")), "no-such-token",
              lambda r: (r.status_code, r.text)),
        Probe("refresh_token", lambda v: refresh(d, "web", v, e.sec("web")), "no-such-refresh-token", js),
        Probe("code", lambda v: redeem(d, "web", v, "v" * 43, e.sec("web")), "no-such-code", js),
        Probe("resource@client_credentials(uri)", lambda v: requests.post(
            d.token_endpoint, data={"grant_type": "client_credentials", "resource": v}, headers=svc, timeout=10),
              "https://unknown.example/x", js, uri_sqli),
        Probe("resource@client_credentials(non-uri)", lambda v: requests.post(
            d.token_endpoint, data={"grant_type": "client_credentials", "resource": v}, headers=svc, timeout=10),
              "not a uri", js),
        Probe("audience@client_credentials", lambda v: requests.post(
            d.token_endpoint, data={"grant_type": "client_credentials", "audience": v}, headers=svc, timeout=10),
              "https://unknown.example/x", js),
        Probe("audience@exchange", lambda v: exchange(d, "agent-x", e.sec("agent-x"), person["access_token"],
                                                      audience=v), "https://unknown.example/x", js),
    ]


@pytest.fixture(scope="module")
def probes(env):
    return {p.name: p for p in sqli_probes(env)}


SQLI_PROBES = ["client_id@basic", "client_id@post", "client_id@authorize", "username@login",
               "jti@/admin/tokens/{jti}", "sub@/admin/tokens", "jti@/admin/revoke", "actor@/admin/audit",
               "token@/introspect", "token@/revoke", "refresh_token", "code",
               "resource@client_credentials(uri)", "resource@client_credentials(non-uri)",
               "audience@client_credentials", "audience@exchange"]


@pytest.mark.parametrize("name", SQLI_PROBES)
def test_sql_shaped_identifiers_are_plain_unknown_values_rfc6819_s5_1_4_1_3(env, probes, name):
    """RFC 6819 §5.1.4.1.3 / §4.4.1.x (no injection through identifiers):
    an SQL-injection-shaped client_id, username, jti, sub, actor, token,
    refresh token, code, resource or audience is answered exactly like a
    plain unknown value — same status, same `error`, same
    error_description (same page for HTML answers) — and in similar time
    (median of 20 interleaved tries within 3x + 15 ms of the plain one)."""
    p = probes[name]
    expected = p.answer(p.send(p.plain))
    if isinstance(expected[0], int):
        assert expected[0] < 500, expected
    for v in p.shaped:
        got = p.answer(p.send(v))
        assert got == expected, f"{name}: {v!r} answered {got!r:.400}, a plain unknown value {expected!r:.400}"
    t_plain, t_sqli = interleaved_medians(lambda: p.send(p.plain), lambda: p.send(p.shaped[0]), n=20)
    assert t_sqli <= 3 * t_plain + 0.015, f"{name}: median {t_sqli * 1000:.1f} ms vs {t_plain * 1000:.1f} ms"


def test_sql_shaped_assertion_jti_is_stored_literally_rfc7523_s3_item_7(env):
    """RFC 7523 §3 item 7 (jti single use) / RFC 6819 §5.1.4.1.3: an
    assertion whose jti is an SQL-shaped string is accepted once like any
    fresh jti (200), its replay refused (401 invalid_client) exactly like a
    plain jti's replay, and a "matches everything" jti does not block other
    fresh jtis. Afterwards the store is intact (every client still works,
    the admin listing answers)."""
    e, d = env, env.d
    for j in [uuid.uuid4().hex] + [s + uuid.uuid4().hex[:6] for s in SQLI] + ["' OR '1'='1"]:
        assert_token_ok(d.token(assertion_form(e.assertion(jti=j))))
        assert_oauth_error(d.token(assertion_form(e.assertion(jti=j))), 401, "invalid_client")
    assert_token_ok(d.token(assertion_form(e.assertion())))
    assert_token_ok(e.cc("svc"))
    r = requests.get(d.url("/admin/tokens"), params={"client_id": "jwtsvc", "limit": "1000"},
                     headers={"Authorization": f"Bearer {e.admin_token()}"}, timeout=10)
    assert r.status_code == 200 and len(r.json()) >= len(SQLI) + 3, r.text[:200]


# --------------------------------------------------------------------------
# 8. Rate limits
# --------------------------------------------------------------------------


def test_rate_limit_per_client_429_retry_after_rfc6749_s5_2(new_deputy):
    """RFC 6819 §4.4.1.11 / §5.1.4.2.3 (rate limiting against guessing and
    exhaustion), RFC 6585 §4 (429 + Retry-After): with
    DEPUTY_RATE_LIMIT_CLIENT=5 a burst of 20 token requests from one client
    gets 429s with an integer Retry-After and an RFC 6749 §5.2 JSON error; at
    most 5 per started second succeed; another client is not affected; after
    Retry-After the client is served again."""
    d = new_deputy(settings(DEPUTY_RATE_LIMIT_CLIENT="5"))
    a = add_client(d, "svc-a", kind="service", auth="client_secret_basic", scopes=("read",), audiences=(API,),
                   grants=("client_credentials",), redirect_uris=())["client_secret"]
    b = add_client(d, "svc-b", kind="service", auth="client_secret_basic", scopes=("read",), audiences=(API,),
                   grants=("client_credentials",), redirect_uris=())["client_secret"]
    d.start()
    s = requests.Session()
    t0 = time.time()
    burst = [s.post(d.token_endpoint, data={"grant_type": "client_credentials"}, headers=basic_auth("svc-a", a),
                    timeout=10) for _ in range(20)]
    seconds = int(time.time()) - int(t0) + 1
    codes = [r.status_code for r in burst]
    assert set(codes) <= {200, 429}, codes
    limited = [r for r in burst if r.status_code == 429]
    assert limited, codes
    assert codes.count(200) <= 5 * seconds, codes
    for r in limited:
        assert r.headers.get("Retry-After", "").isdigit() and int(r.headers["Retry-After"]) >= 1, r.headers
        assert r.json().get("error") in ("temporarily_unavailable", "slow_down"), r.text
        assert "access_token" not in r.json()
    assert_token_ok(requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                                  headers=basic_auth("svc-b", b), timeout=10))
    time.sleep(int(limited[-1].headers["Retry-After"]) + 0.1)
    assert_token_ok(s.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                           headers=basic_auth("svc-a", a), timeout=10))



def post_from(d: Deputy, source: str, path: str, form: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    """POST a form from a chosen loopback source address (127.0.0.0/8):
    (status, JSON body, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, body=urlencode(form), headers={"Content-Type": FORM, **(headers or {})})
        r = conn.getresponse()
        body = r.read()
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        return r.status, parsed, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def test_failed_client_authentications_are_429_after_the_budget_rfc6819_s5_1_4_2_3(new_deputy):
    """RFC 6819 §5.1.4.2.3 / §4.4.1.11 (limit guessing of client
    credentials), RFC 6585 §4 (429 + Retry-After), with deputy's default
    budget of 20 failures (DEPUTY_AUTH_FAILURE_WINDOW=5 s to keep the test
    short): from one address, 20 bad client secrets are 401 invalid_client
    each and the 21st is 429 temporarily_unavailable with Retry-After; the
    right secret from the same address is still 200 at once; /introspect and
    /revoke refuse further failures from that address with 429 too. From
    another loopback address (127.0.0.2) a bad secret for another client is
    401, while one for the spent client id is 429 (the budget is per client id
    and per address). After Retry-After failures are 401 again."""
    d = new_deputy(settings(DEPUTY_AUTH_FAILURE_LIMIT=None, DEPUTY_AUTH_FAILURE_WINDOW="5"))
    sec = {}
    for cid in ("svc-a", "svc-b"):
        sec[cid] = add_client(d, cid, kind="service", auth="client_secret_basic", scopes=("read",),
                              audiences=(API,), grants=("client_credentials",), redirect_uris=())["client_secret"]
    d.start()
    cc = {"grant_type": "client_credentials"}
    bad = "not-the-secret-" + "x" * 30
    for i in range(20):
        status, body, _ = post_from(d, "127.0.0.1", "/token", cc, basic_auth("svc-a", bad))
        assert (status, body.get("error")) == (401, "invalid_client"), (i, status, body)
    status, body, headers = post_from(d, "127.0.0.1", "/token", cc, basic_auth("svc-a", bad))
    assert (status, body.get("error")) == (429, "temporarily_unavailable"), (status, body)
    retry = headers.get("retry-after", "")
    assert retry.isdigit() and 1 <= int(retry) <= 5, headers
    assert "access_token" not in body
    status, body, _ = post_from(d, "127.0.0.1", "/token", cc, basic_auth("svc-a", sec["svc-a"]))
    assert status == 200 and body.get("token_type") == "Bearer", (status, body)
    for path in ("/introspect", "/revoke"):
        status, body, headers = post_from(d, "127.0.0.1", path, {"token": "x"}, basic_auth("svc-b", bad))
        assert (status, body.get("error")) == (429, "temporarily_unavailable"), (path, status, body)
        assert headers.get("retry-after", "").isdigit(), headers
    status, body, _ = post_from(d, "127.0.0.2", "/token", cc, basic_auth("svc-b", bad))
    assert (status, body.get("error")) == (401, "invalid_client"), (status, body)
    status, body, _ = post_from(d, "127.0.0.2", "/token", cc, basic_auth("svc-a", bad))
    assert (status, body.get("error")) == (429, "temporarily_unavailable"), (status, body)
    time.sleep(int(retry) + 0.2)
    status, body, _ = post_from(d, "127.0.0.1", "/token", cc, basic_auth("svc-a", bad))
    assert (status, body.get("error")) == (401, "invalid_client"), (status, body)
    alive(d)

# --------------------------------------------------------------------------
# 9. Malformed HTTP in the server's log
# --------------------------------------------------------------------------

GARBAGE = [b"\x16\x03\x01garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\x03\r\n\r\n",
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"]


def log_records(d: Deputy, fmt: str) -> list[tuple[str, str]]:
    """(level, whole line) for every line of the server's log (stderr)."""
    records = []
    for line in d.log_tail(10**7).splitlines():
        if fmt == "json":
            records.append((json.loads(line)["level"], line))
        else:
            m = re.match(r"\S+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR) ", line)
            records.append((m.group(1) if m else "?", line))
    return records


@pytest.mark.engine_independent
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_malformed_http_is_logged_below_error_once_per_connection_rfc9112_s2_2(new_deputy, fmt):
    """RFC 9112 §2.2 / §3 (a request line or header that cannot be parsed is
    answered 400 and the connection closed): 12 connections sending garbage
    (a TLS ClientHello on the plain port, HTTP/9.9, binary noise, a
    non-numeric Content-Length) each get 400 and a close; the server's log
    (DEPUTY_LOG_FORMAT text and json) has no ERROR line at all, and exactly
    one WARN line "malformed HTTP request" per connection, with the cause;
    the server keeps answering."""
    d = new_deputy(settings(DEPUTY_LOG_FORMAT=fmt))
    d.start()
    n = 12
    for i in range(n):
        with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
            s.sendall(GARBAGE[i % len(GARBAGE)])
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
            assert s.recv(4096) == b"", "the connection is closed"
    alive(d)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        mentions = [r for r in log_records(d, fmt) if "malformed HTTP request" in r[1]]
        if len(mentions) >= n:
            break
        time.sleep(0.1)
    d.stop()
    records = log_records(d, fmt)
    assert [r for r in records if r[0] in ("ERROR", "?")] == [], records
    mentions = [r for r in records if "malformed" in r[1] or "stream error" in r[1] or "parse error" in r[1]]
    assert len(mentions) == n, mentions
    assert all(level == "WARN" for level, _ in mentions), mentions
    if fmt == "json":
        fields = [json.loads(line)["fields"] for _, line in mentions]
        assert all(f["message"] == "malformed HTTP request" and f["cause"] for f in fields), fields
    else:
        assert all('cause="' in line for _, line in mentions), mentions
