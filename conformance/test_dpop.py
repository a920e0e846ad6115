"""DPoP, sender-constrained tokens (RFC 9449), black box.

Proofs are built by hand with jwcrypto (keys, signatures, RFC 7638
thumbprints) so that every defect can be made on purpose; deputy's tokens are
verified against its /jwks with jwcrypto. One deputy serves the whole module;
a second one, with `dpop_nonces = on`, only the nonce tests. The last test
runs panva's `openid-client` 6 (conformance/e2e/dpop.mjs), a real client
library that speaks DPoP, against the first.

What deputy does beyond the RFC (README "Sender-constrained tokens"): a
DPoP-bound subject token is exchanged (RFC 8693) only with a proof, and a
delegation rule or a client may require DPoP."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from jwcrypto import jwk

from conftest import Deputy, assert_oauth_error, b64url, basic_auth, sign_compact
from flows import (AT_TYPE, REDIRECT_URI, TOKEN_EXCHANGE, ProofKey, add_client, add_user, allow_delegation, ath,
                   authorize, claims, dpop, introspect_json, post, refresh, settings, verify_jwcrypto)

PW = "correct horse battery staple"
API = "https://api.example/"
NOTES = "https://notes.example"
STRICT = "https://strict.example"
ALGS = ["ES256", "RS256", "PS256", "EdDSA"]
AGENT = "dp-agent"
WEB = "dp-web"


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def assert_dpop_token(r: requests.Response, key: ProofKey) -> dict:
    """RFC 9449 §5: 200, token_type DPoP, the access token bound to `key`."""
    assert r.status_code == 200, f"expected 200, got {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert body.get("token_type") == "DPoP", body
    assert claims(body["access_token"])["cnf"] == {"jkt": key.jkt}, claims(body["access_token"])
    return body


def www_authenticate(r: requests.Response) -> str:
    return r.headers.get("WWW-Authenticate", "")


def assert_resource_refused(r: requests.Response, code: str):
    """RFC 9449 §7.1 / RFC 6750 §3.1: 401 with a DPoP challenge naming `code`."""
    assert r.status_code == 401, f"expected 401 {code}, got {r.status_code}: {r.text[:300]}"
    www = www_authenticate(r)
    assert www.startswith("DPoP "), www
    assert f'error="{code}"' in www, www
    # §7.1: the DPoP challenge names the algorithms the resource accepts.
    assert f'algs="{" ".join(ALGS)}"' in www, www
    assert "access_token" not in r.text


# --------------------------------------------------------------------------
# The module's deputy
# --------------------------------------------------------------------------


class Env:
    def __init__(self, d: Deputy, secrets: dict):
        self.d, self.secrets = d, secrets

    @property
    def token_url(self) -> str:
        return self.d.url("/token")

    @property
    def userinfo_url(self) -> str:
        return self.d.url("/userinfo")

    def cc(self, client_id: str = "svc", headers: dict | None = None, **extra) -> requests.Response:
        """client_credentials with client_secret_basic (RFC 6749 §4.4)."""
        return requests.post(self.token_url, data={"grant_type": "client_credentials", **extra},
                             headers={**basic_auth(client_id, self.secrets[client_id]), **(headers or {})},
                             timeout=10)

    def issued(self, client_id: str) -> int:
        """Tokens issued to `client_id` by deputy's audit trail: token_issued
        events and granted exchanges (a token_exchange event with a jti)."""
        events = self.d.cli("audit", "--client", client_id, "--limit", "1000")
        return sum(1 for e in events
                   if e["event"] == "token_issued" or (e["event"] == "token_exchange" and e.get("jti")))

    def code(self, client_id: str, key: ProofKey | None = None, session=None, **params) -> tuple[str, str]:
        """A person (alice) signs in to `client_id`; with `key`, the code is
        bound to it with dpop_jkt (RFC 9449 §10)."""
        if key is not None:
            params["dpop_jkt"] = key.jkt
        return authorize(self.d, client_id, "alice", PW, "openid notes:read", extra_params=params,
                         session=session)

    def redeem(self, client_id: str, code: str, verifier: str, key: ProofKey | None, client_auth=None):
        headers = dpop(key.proof("POST", self.token_url)) if key else {}
        return post(self.d, "/token", client_id, client_auth, {
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}, headers=headers)


def _post_with_headers(d: Deputy, path: str, data: dict, headers: dict):
    """POST a form with these headers (flows' helpers take extra keyword
    arguments as form fields)."""
    return requests.post(d.url(path), data=data, headers=headers, timeout=15, allow_redirects=False)


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir / "dpop", settings())
    add_user(d, "alice", PW)
    secrets = {}
    secrets["svc"] = d.add_client("svc", "client_secret_basic", audiences=(API,))["client_secret"]
    secrets["strict"] = d.cli("client", "add", "--id", "strict", "--kind", "service", "--auth",
                              "client_secret_basic", "--scope", "read", "--audience", API,
                              "--require-dpop")["client_secret"]
    add_client(d, WEB)  # a public app: authorization_code + refresh_token
    secrets[AGENT] = add_client(d, AGENT, kind="agent", auth="client_secret_basic",
                                grants=("authorization_code", "refresh_token", "token-exchange"))["client_secret"]
    allow_delegation(d, AGENT, NOTES, ["notes:read"])
    d.cli("delegation", "allow", "--actor", AGENT, "--audience", STRICT, "--scope", "notes:read",
          "--require-dpop")
    d.start()
    yield Env(d, secrets)
    d.stop()


@pytest.fixture(autouse=True)
def _show_logs(request, env):
    request.node._deputies = [env.d]
    yield


# --------------------------------------------------------------------------
# The token endpoint: client_credentials (RFC 9449 §4.3, §5)
# --------------------------------------------------------------------------


def defects(env: Env) -> dict[str, str]:
    """One proof per refused defect (RFC 9449 §4.3 check list)."""
    url = env.token_url
    k, other = ProofKey(), ProofKey()
    now = int(time.time())
    hs_key = jwk.JWK(kty="oct", k=b64url(b"a shared secret that is not a key"))
    private = k.key.jwk.export_private(as_dict=True)
    rsa = ProofKey("RS256")
    return {
        # §4.3 item 2: one well-formed JWT.
        "not a JWT": "not-a-jwt",
        "two parts only": ".".join(k.proof("POST", url).split(".")[:2]),
        # item 2 with RFC 7515 §4.1.11: deputy understands no JWS extension.
        "crit naming an extension": k.proof("POST", url, header={"crit": ["foo"], "foo": 1}),
        "crit empty": k.proof("POST", url, header={"crit": []}),
        "crit naming a registered claim": k.proof("POST", url, header={"crit": ["exp"]}),
        # item 4: typ dpop+jwt.
        "typ JWT": k.proof("POST", url, header={"typ": "JWT"}),
        "typ missing": k.proof("POST", url, header={"typ": None}),
        # item 5: an asymmetric alg, never none or a MAC.
        "alg none": sign_compact({"typ": "dpop+jwt", "alg": "none", "jwk": k.public()},
                                 {"jti": uuid.uuid4().hex, "htm": "POST", "htu": url, "iat": now}, None),
        "HS256 with an oct jwk": k.proof("POST", url, header={"alg": "HS256", "jwk": hs_key.export(as_dict=True)},
                                         signer=hs_key),
        "HS256 keyed with the public jwk": k.proof(
            "POST", url, header={"alg": "HS256"},
            signer=jwk.JWK(kty="oct", k=b64url(json.dumps(k.public()).encode()))),
        # item 7: never a private key in jwk.
        "private key in jwk": k.proof("POST", url, header={"jwk": private}),
        "no jwk": k.proof("POST", url, header={"jwk": None}),
        # item 6: the signature verifies with the jwk the proof carries.
        "signed by another key": k.proof("POST", url, signer=other.key.jwk),
        "jwk of another kind than alg": k.proof("POST", url, header={"alg": "RS256"}, signer=rsa.key.jwk),
        # item 8: htm is the request's method.
        "htm GET": k.proof("GET", url),
        "htm post (case)": k.proof("post", url),
        "htm missing": k.proof("POST", url, htm=None),
        # item 9: htu is this endpoint.
        "htu /userinfo": k.proof("POST", env.d.url("/userinfo")),
        "htu another port": k.proof("POST", f"http://127.0.0.1:1{urlsplit(url).path}"),
        "htu another host": k.proof("POST", "https://deputy.example/token"),
        "htu missing": k.proof("POST", url, htu=None),
        # item 11: iat within deputy's window (60 s).
        "iat stale (5 min)": k.proof("POST", url, iat=now - 300),
        "iat in the future (5 min)": k.proof("POST", url, iat=now + 300),
        "iat missing": k.proof("POST", url, iat=None),
        "iat a string": k.proof("POST", url, iat=str(now)),
        # §4.2: jti is required (single use, §11.1).
        "jti missing": k.proof("POST", url, jti=None),
    }


def test_each_defective_proof_is_refused_and_nothing_is_issued_rfc9449_s4_3(env):
    """RFC 9449 §4.3: every failed check is `400 invalid_dpop_proof`
    (§5, §12.2: the error code, exact) and no token is issued (the audit
    trail's token_issued count for the client does not move)."""
    before = env.issued("svc")
    wrong = {}
    for name, proof in defects(env).items():
        r = env.cc(headers=dpop(proof))
        if r.status_code != 400 or r.json().get("error") != "invalid_dpop_proof":
            wrong[name] = (r.status_code, r.text[:200])
            continue
        assert_oauth_error(r, 400, "invalid_dpop_proof")
    assert not wrong, wrong
    assert env.issued("svc") == before
    # The count does move for a valid proof (the check above can fail).
    k = ProofKey()
    assert_dpop_token(env.cc(headers=dpop(k.proof("POST", env.token_url))), k)
    assert env.issued("svc") == before + 1


def raw_post(url: str, body: str, headers: list[tuple[str, str]]) -> tuple[int, dict]:
    """POST with repeated header lines (requests merges them)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("POST", parts.path)
        for name, value in headers + [("Content-Type", "application/x-www-form-urlencoded"),
                                      ("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body.encode())
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_two_dpop_headers_are_refused_rfc9449_s4_3(env):
    """RFC 9449 §4.3 item 1: exactly one DPoP header; two valid proofs in two
    header lines are refused, and neither is spent (each works alone after)."""
    k = ProofKey()
    a, b = k.proof("POST", env.token_url), k.proof("POST", env.token_url)
    auth = basic_auth("svc", env.secrets["svc"])["Authorization"]
    status, body = raw_post(env.token_url, "grant_type=client_credentials",
                            [("Authorization", auth), ("DPoP", a), ("DPoP", b)])
    assert (status, body.get("error")) == (400, "invalid_dpop_proof"), body
    assert "access_token" not in body
    assert_dpop_token(env.cc(headers=dpop(a)), k)


@pytest.mark.parametrize("alg", ALGS)
def test_a_valid_proof_binds_the_access_token_rfc9449_s5_s6(env, alg):
    """RFC 9449 §5 and §6.1: with a valid proof (ES256, RSA 2048 RS256 and
    PS256, Ed25519) the response says `token_type: DPoP`, the access token
    verifies against deputy's /jwks and carries `cnf.jkt`, the RFC 7638
    thumbprint of the proof's key (jwcrypto's); introspection (§6.2) shows
    `cnf` and `token_type: DPoP`."""
    k = ProofKey(alg)
    body = assert_dpop_token(env.cc(headers=dpop(k.proof("POST", env.token_url))), k)
    _, c = verify_jwcrypto(env.d, body["access_token"])
    assert c["cnf"] == {"jkt": k.jkt}
    assert c["client_id"] == "svc" and c["aud"] == API
    info = introspect_json(env.d, body["access_token"], "svc", env.secrets["svc"])
    assert info["active"] is True, info
    assert info["cnf"] == {"jkt": k.jkt}, info
    assert info["token_type"] == "DPoP", info


def test_a_proof_is_accepted_once_rfc9449_s11_1(env):
    """RFC 9449 §11.1: the same proof (same jti) presented again is refused,
    even with a valid client; a new proof of the same key works."""
    k = ProofKey()
    proof = k.proof("POST", env.token_url)
    assert_dpop_token(env.cc(headers=dpop(proof)), k)
    assert_oauth_error(env.cc(headers=dpop(proof)), 400, "invalid_dpop_proof")
    assert_dpop_token(env.cc(headers=dpop(k.proof("POST", env.token_url))), k)


def test_htu_ignores_query_and_normalises_rfc9449_s4_3(env):
    """RFC 9449 §4.3 item 9: htu is compared without query and fragment,
    after RFC 3986 §6.2.2-§6.2.3 normalisation (host case, default port)."""
    k = ProofKey()
    assert_dpop_token(env.cc(headers=dpop(k.proof("POST", env.token_url + "?x=1#f"))), k)
    parts = urlsplit(env.token_url)
    upper = f"HTTP://{parts.hostname.upper()}:{parts.port}{parts.path}"
    assert_dpop_token(env.cc(headers=dpop(k.proof("POST", upper))), k)


def test_without_a_proof_the_token_is_a_bearer_token_rfc6750(env):
    """RFC 9449 §5: DPoP is the client's choice unless required; without a
    proof the token is a Bearer token with no cnf."""
    r = env.cc()
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"
    assert "cnf" not in claims(r.json()["access_token"])


def test_a_client_that_requires_dpop_gets_tokens_only_with_a_proof_rfc9449_s5_2(env):
    """RFC 9449 §5.2 (`dpop_bound_access_tokens`; `deputy client add
    --require-dpop`): no proof, `400 invalid_dpop_proof` and nothing issued;
    with a proof, a DPoP token."""
    before = env.issued("strict")
    assert_oauth_error(env.cc("strict"), 400, "invalid_dpop_proof")
    assert env.issued("strict") == before
    k = ProofKey()
    assert_dpop_token(env.cc("strict", headers=dpop(k.proof("POST", env.token_url))), k)
    assert env.issued("strict") == before + 1


def test_discovery_lists_the_proof_algorithms_rfc9449_s5_1(env):
    """RFC 9449 §5.1: `dpop_signing_alg_values_supported` in the RFC 8414
    metadata (and OIDC discovery), asymmetric algorithms only; each one is
    accepted (test_a_valid_proof_binds_the_access_token)."""
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        meta = env.d.get(path).json()
        assert meta["dpop_signing_alg_values_supported"] == ALGS, meta


# --------------------------------------------------------------------------
# Authorization code and refresh (RFC 9449 §5, §10)
# --------------------------------------------------------------------------


def test_public_client_code_and_refresh_family_bound_to_the_key_rfc9449_s5(env):
    """RFC 9449 §5: a public client redeeming its code with a proof gets a
    bound access token and a refresh token bound to the same key. A refresh
    without a proof, or with a proof of another key, is `400 invalid_grant`
    and changes nothing: the same refresh token still works with the right
    key afterwards (no rotation, no reuse revocation of the family), and so
    does its successor."""
    k, other = ProofKey(), ProofKey()
    code, verifier = env.code(WEB)
    body = assert_dpop_token(env.redeem(WEB, code, verifier, k), k)
    assert isinstance(body.get("refresh_token"), str), body
    _, c = verify_jwcrypto(env.d, body["access_token"])
    assert c["client_id"] == WEB
    rt = body["refresh_token"]

    def refresh_with(token, key):
        headers = dpop(key.proof("POST", env.token_url)) if key else {}
        return _post_with_headers(env.d, "/token", {"grant_type": "refresh_token", "refresh_token": token,
                                                    "client_id": WEB}, headers)

    assert_oauth_error(refresh_with(rt, None), 400, "invalid_grant")
    assert_oauth_error(refresh_with(rt, other), 400, "invalid_grant")
    second = assert_dpop_token(refresh_with(rt, k), k)
    assert second["refresh_token"] != rt
    assert_oauth_error(refresh_with(second["refresh_token"], other), 400, "invalid_grant")
    third = assert_dpop_token(refresh_with(second["refresh_token"], k), k)
    assert third["access_token"] != second["access_token"]


def test_a_confidential_clients_refresh_binds_each_access_token_to_its_proof_rfc9449_s5(env):
    """RFC 9449 §5: a confidential client's refresh token is bound by its
    client authentication, not to a key: a refresh with a proof of any key
    gets an access token bound to that key, one without a proof a Bearer
    token."""
    k, other = ProofKey(), ProofKey()
    code, verifier = env.code(AGENT)
    first = assert_dpop_token(env.redeem(AGENT, code, verifier, k, client_auth=env.secrets[AGENT]), k)
    headers = {**basic_auth(AGENT, env.secrets[AGENT]), **dpop(other.proof("POST", env.token_url))}
    second = assert_dpop_token(_post_with_headers(env.d, "/token", {
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, headers), other)
    r = refresh(env.d, AGENT, second["refresh_token"], env.secrets[AGENT])
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer" and "cnf" not in claims(r.json()["access_token"])


def test_a_code_bound_with_dpop_jkt_needs_that_key_rfc9449_s10(env):
    """RFC 9449 §10: `dpop_jkt` at /authorize binds the code to a key: a
    proof of another key, or none, is `invalid_grant` at /token; a proof of
    that key redeems it (a bound token)."""
    k, other = ProofKey(), ProofKey()
    browser = requests.Session()  # the person signs in once; consent is remembered
    code, verifier = env.code(WEB, k, session=browser)
    assert_oauth_error(env.redeem(WEB, code, verifier, other), 400, "invalid_grant")
    code, verifier = env.code(WEB, k, session=browser)
    assert_oauth_error(env.redeem(WEB, code, verifier, None), 400, "invalid_grant")
    code, verifier = env.code(WEB, k, session=browser)
    assert_dpop_token(env.redeem(WEB, code, verifier, k), k)


# --------------------------------------------------------------------------
# /userinfo, a protected resource (RFC 9449 §7)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bound_person_token(env) -> tuple[str, ProofKey]:
    k = ProofKey()
    code, verifier = env.code(WEB)
    return assert_dpop_token(env.redeem(WEB, code, verifier, k), k)["access_token"], k


def test_userinfo_takes_a_bound_token_only_with_its_proof_rfc9449_s7(env, bound_person_token):
    """RFC 9449 §7.1-§7.2: a bound token as a Bearer token is `401
    invalid_token`; as `Authorization: DPoP` without a proof, with a proof
    without `ath` or with the `ath` of another token, or for another method,
    it is 401 `invalid_dpop_proof`; a proof by another key is 401
    `invalid_token` (§7.1: the key is not the token's); the right proof gets
    the claims, and the same proof again is `invalid_dpop_proof` (§11.1)."""
    token, k = bound_person_token
    url = env.userinfo_url
    other = ProofKey()
    dp = {"Authorization": f"DPoP {token}"}

    def get(headers):
        return requests.get(url, headers=headers, timeout=10)

    r = get({"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    # The challenge names the scheme the token needs (README: DPoP with algs).
    assert www_authenticate(r) == 'DPoP error="invalid_token", algs="ES256 RS256 PS256 EdDSA"', \
        www_authenticate(r)
    assert_resource_refused(get(dp), "invalid_dpop_proof")
    assert_resource_refused(get({**dp, **dpop(k.proof("GET", url))}), "invalid_dpop_proof")
    assert_resource_refused(get({**dp, **dpop(k.proof("GET", url, ath=ath(token + "x")))}), "invalid_dpop_proof")
    assert_resource_refused(get({**dp, **dpop(k.proof("POST", url, token=token))}), "invalid_dpop_proof")
    assert_resource_refused(get({**dp, **dpop(k.proof("GET", env.token_url, token=token))}),
                            "invalid_dpop_proof")
    assert_resource_refused(get({**dp, **dpop(other.proof("GET", url, token=token))}), "invalid_token")
    good = k.proof("GET", url, token=token)
    r = get({**dp, **dpop(good)})
    assert r.status_code == 200, r.text
    assert r.json()["sub"] == claims(token)["sub"]
    assert_resource_refused(get({**dp, **dpop(good)}), "invalid_dpop_proof")
    # POST /userinfo (OIDC Core §5.3.1) with a proof for POST.
    r = requests.post(url, headers={**dp, **dpop(k.proof("POST", url, token=token))}, timeout=10)
    assert r.status_code == 200, r.text


def test_userinfo_dpop_scheme_with_an_unbound_token_is_refused_rfc9449_s7_2(env):
    """RFC 9449 §7.2: an unbound (Bearer) token is not a DPoP token: sent as
    `Authorization: DPoP` with a valid proof it is 401 `invalid_token`."""
    code, verifier = env.code(WEB)
    r = env.redeem(WEB, code, verifier, None)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer", r.text
    token = r.json()["access_token"]
    k = ProofKey()
    r = requests.get(env.userinfo_url, headers={"Authorization": f"DPoP {token}",
                                                **dpop(k.proof("GET", env.userinfo_url, token=token))}, timeout=10)
    assert_resource_refused(r, "invalid_token")
    r = requests.get(env.userinfo_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------
# Token exchange (RFC 8693 with DPoP; deputy's rules)
# --------------------------------------------------------------------------


def person_token_of_agent(env: Env, key: ProofKey | None) -> str:
    code, verifier = env.code(AGENT)
    r = env.redeem(AGENT, code, verifier, key, client_auth=env.secrets[AGENT])
    if key is None:
        assert r.status_code == 200 and r.json()["token_type"] == "Bearer", r.text
        return r.json()["access_token"]
    return assert_dpop_token(r, key)["access_token"]


def exchange_with(env: Env, subject: str, audience: str, key: ProofKey | None) -> requests.Response:
    headers = basic_auth(AGENT, env.secrets[AGENT])
    if key is not None:
        headers.update(dpop(key.proof("POST", env.token_url)))
    return _post_with_headers(env.d, "/token", {
        "grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": AT_TYPE,
        "audience": audience, "scope": "notes:read"}, headers)


def test_a_bound_subject_token_is_exchanged_only_with_the_holders_proof(env):
    """RFC 8693 §2.1 with RFC 9449 (deputy's rule): a DPoP-bound subject token
    is never exchanged as a bearer token (`400 invalid_dpop_proof`, nothing
    issued); the agent it was issued to must prove its key (another key:
    `invalid_dpop_proof`); with that proof the exchanged token is DPoP-bound
    to it, acts for the person (`act.sub` = the agent)."""
    k, other = ProofKey(), ProofKey()
    subject = person_token_of_agent(env, k)
    before = env.issued(AGENT)
    assert_oauth_error(exchange_with(env, subject, NOTES, None), 400, "invalid_dpop_proof")
    assert_oauth_error(exchange_with(env, subject, NOTES, other), 400, "invalid_dpop_proof")
    assert env.issued(AGENT) == before
    body = assert_dpop_token(exchange_with(env, subject, NOTES, k), k)
    assert env.issued(AGENT) == before + 1
    assert body["issued_token_type"] == AT_TYPE, body
    _, c = verify_jwcrypto(env.d, body["access_token"])
    assert c["aud"] == NOTES and c["act"] == {"sub": AGENT}
    assert c["sub"] == claims(subject)["sub"]


def test_a_delegation_rule_that_requires_dpop(env):
    """`deputy delegation allow --require-dpop`: the exchanged token is issued
    only with the actor's proof (`400 invalid_dpop_proof` without), then bound
    to the proof's key; a rule without it still exchanges an unbound token
    as a Bearer token."""
    subject = person_token_of_agent(env, None)
    assert_oauth_error(exchange_with(env, subject, STRICT, None), 400, "invalid_dpop_proof")
    k = ProofKey("EdDSA")
    assert_dpop_token(exchange_with(env, subject, STRICT, k), k)
    r = exchange_with(env, subject, NOTES, None)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer", r.text


# --------------------------------------------------------------------------
# Server nonces (RFC 9449 §8)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nonce_env(module_dir):
    d = Deputy(module_dir / "nonces", settings(DEPUTY_DPOP_NONCES="on"))
    secret = d.add_client("svc", "client_secret_basic", audiences=(API,))["client_secret"]
    add_user(d, "alice", PW)
    add_client(d, WEB)
    d.start()
    yield Env(d, {"svc": secret})
    d.stop()


def test_with_nonces_a_proof_needs_the_servers_nonce_rfc9449_s8(nonce_env):
    """RFC 9449 §8: `dpop_nonces = on`: a proof without a nonce, or with one
    deputy did not issue, is `400 use_dpop_nonce` with the nonce in
    `DPoP-Nonce` (§8.1) and issues nothing; the retry with it gets a bound
    token, and the answer may carry a fresh nonce (§8.2)."""
    e = nonce_env
    k = ProofKey()
    before = e.issued("svc")
    r = e.cc(headers=dpop(k.proof("POST", e.token_url)))
    assert_oauth_error(r, 400, "use_dpop_nonce")
    nonce = r.headers.get("DPoP-Nonce")
    assert nonce, r.headers
    r = e.cc(headers=dpop(k.proof("POST", e.token_url, nonce=nonce + "x")))
    assert_oauth_error(r, 400, "use_dpop_nonce")
    nonce = r.headers.get("DPoP-Nonce")
    assert nonce, r.headers
    assert e.issued("svc") == before
    r = e.cc(headers=dpop(k.proof("POST", e.token_url, nonce=nonce)))
    assert_dpop_token(r, k)
    assert e.issued("svc") == before + 1
    assert r.headers.get("DPoP-Nonce"), r.headers  # §8.2: a nonce for the next request
    # A defective proof is still invalid_dpop_proof, not a nonce request.
    assert_oauth_error(e.cc(headers=dpop(k.proof("GET", e.token_url, nonce=nonce))), 400, "invalid_dpop_proof")


def test_with_nonces_userinfo_asks_for_the_nonce_rfc9449_s9(nonce_env):
    """RFC 9449 §9: at a resource, a proof without the server's nonce is
    `401` with `error="use_dpop_nonce"` in the DPoP challenge and the nonce
    in `DPoP-Nonce`; the retry with it gets the claims."""
    e = nonce_env
    k = ProofKey()
    token_nonce = e.cc(headers=dpop(k.proof("POST", e.token_url))).headers["DPoP-Nonce"]
    code, verifier = e.code(WEB)
    token = assert_dpop_token(post(e.d, "/token", WEB, None, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier}, headers=dpop(k.proof("POST", e.token_url, nonce=token_nonce))), k)["access_token"]
    auth = {"Authorization": f"DPoP {token}"}
    r = requests.get(e.userinfo_url, headers={**auth, **dpop(k.proof("GET", e.userinfo_url, token=token))},
                     timeout=10)
    assert_resource_refused(r, "use_dpop_nonce")
    nonce = r.headers.get("DPoP-Nonce")
    assert nonce, r.headers
    r = requests.get(e.userinfo_url, timeout=10,
                     headers={**auth, **dpop(k.proof("GET", e.userinfo_url, token=token, nonce=nonce))})
    assert r.status_code == 200, r.text
    assert r.json()["sub"] == claims(token)["sub"]


# --------------------------------------------------------------------------
# A real client library: openid-client 6 (conformance/e2e/dpop.mjs)
# --------------------------------------------------------------------------


def test_openid_client_obtains_and_uses_bound_tokens_rfc9449(env, module_dir):
    """panva's openid-client 6.9.0 (oauth4webapi underneath) with its own
    DPoP support (`getDPoPHandle`, a key pair from `randomDPoPKeyPair`):
    client credentials with client_secret_basic, then introspection; and a
    public client's authorization code flow (PKCE, `dpop_jkt`), userinfo
    with the bound token and a refresh. The script prints the thumbprint of
    the key it generated; every token deputy issued it is bound to that key."""
    from test_oidc_e2e_openid_client import E2E, ensure_node_modules

    ensure_node_modules()
    d = env.d
    port = 9  # nothing listens: the script reads the redirect from deputy's answer
    redirect_uri = f"http://127.0.0.1:{port}/cb"
    d.cli("client", "add", "--id", "dp-rp", "--kind", "app", "--auth", "none", "--redirect-uri", redirect_uri,
          "--grant", "authorization_code", "--grant", "refresh_token", "--scope", "notes:read")
    run_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DEPUTY_ISSUER": d.issuer,
        "SVC_CLIENT_ID": "svc",
        "SVC_CLIENT_SECRET": env.secrets["svc"],
        "RP_CLIENT_ID": "dp-rp",
        "RP_REDIRECT_URI": redirect_uri,
        "RP_USERNAME": "alice",
        "RP_PASSWORD": PW,
    }
    r = subprocess.run(["node", str(E2E / "dpop.mjs")], cwd=E2E, env=run_env, capture_output=True, text=True,
                       timeout=120)
    out = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    assert r.returncode == 0, f"dpop.mjs failed: {out or r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert out["dpop_algs"] == ALGS
    # Client credentials.
    cc = out["client_credentials"]
    assert cc["token_type"].lower() == "dpop", cc
    assert claims(cc["access_token"])["cnf"] == {"jkt": out["jkt"]}
    _, c = verify_jwcrypto(d, cc["access_token"])
    assert c["cnf"]["jkt"] == out["jkt"] and c["client_id"] == "svc"
    assert cc["introspection"]["active"] is True
    assert cc["introspection"]["token_type"] == "DPoP"
    assert cc["introspection"]["cnf"] == {"jkt": out["jkt"]}
    # The thumbprint the script computed is the RFC 7638 one of its public key.
    assert jwk.JWK(**out["public_jwk"]).thumbprint() == out["jkt"]
    # Authorization code flow, userinfo, refresh.
    code = out["code_flow"]
    assert code["token_type"].lower() == "dpop", code
    assert claims(code["access_token"])["cnf"] == {"jkt": out["jkt"]}
    assert code["userinfo_sub"] == claims(code["access_token"])["sub"]
    assert code["refresh_token_type"].lower() == "dpop"
    assert claims(code["refreshed_access_token"])["cnf"] == {"jkt": out["jkt"]}
    # The refresh family is bound to the script's key: without a proof, refused.
    assert_oauth_error(refresh(d, "dp-rp", code["refresh_token"]), 400, "invalid_grant")
