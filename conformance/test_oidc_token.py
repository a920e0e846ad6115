"""POST /token with grant_type=authorization_code: RFC 6749 §4.1.3 (code
bound to client and redirect_uri, single use, §4.1.2 revocation on reuse,
short life), RFC 7636 §4.1/§4.6 (PKCE verifier), OIDC Core §3.1.3.3/§3.1.3.6
and §2 (token response, ID token claims, at_hash), RFC 9068 §2 (access token
shape), RFC 8707 §2 (resource -> aud), RFC 7662 §2.2 (introspection of
revoked tokens)."""

from __future__ import annotations

import json
import time

import pytest
import requests
from jwcrypto import jwk, jws

from conftest import Deputy, assert_oauth_error, basic_auth, jwt_parts
from oidc_support import (AuthRequest, Browser, add_app, add_user, left_half_hash, new_verifier, query_of, redeem,
                          s256, sign_in_and_allow, www_authenticate_error)

WEB = "https://web.example/cb"
WEB2 = "https://web2.example/cb"
CONF = "https://conf.example/cb"
LOOP = "http://127.0.0.1/cb"
API = "https://api.example/notes"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir)
    user = add_user(d, "alice", email="a@x.example", name="Alice A")
    add_app(d, "web", redirect_uris=[WEB], audiences=[API])
    add_app(d, "web2", redirect_uris=[WEB2])
    add_app(d, "loop", redirect_uris=[LOOP])
    conf = add_app(d, "conf", auth="client_secret_basic", redirect_uris=[CONF])
    d.start()
    b = Browser(d)  # one signed-in browser for the module: consent is remembered
    yield d, b, user, conf["client_secret"]
    b.close()
    d.stop()


def code_for(env, client_id: str, redirect_uri: str, **kw) -> tuple[AuthRequest, str]:
    d, b, _, _ = env
    req = AuthRequest(client_id, redirect_uri, **kw)
    q = sign_in_and_allow(b, req, "alice")
    return req, q["code"]


def introspect(d: Deputy, token: str, client_id: str, secret: str) -> dict:
    r = requests.post(d.url("/introspect"), data={"token": token}, headers=basic_auth(client_id, secret),
                      timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def userinfo(d: Deputy, at: str) -> requests.Response:
    return requests.get(d.url("/userinfo"), headers={"Authorization": f"Bearer {at}"}, timeout=10)


def refresh(d: Deputy, rt: str, client_id: str, secret: str | None = None) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": rt}
    headers = {}
    if secret:
        headers = basic_auth(client_id, secret)
    else:
        data["client_id"] = client_id
    return requests.post(d.token_endpoint, data=data, headers=headers, timeout=10)


# ------------------------------------------------------------ single use


def test_oidc_code_reuse_revokes_first_tokens_rfc6749_s4_1_2(env):
    """RFC 6749 §4.1.2 / §10.5: a code used twice is refused (invalid_grant,
    §5.2) and the server SHOULD revoke all tokens issued from it; RFC 7662
    §2.2: the revoked access and refresh tokens introspect as {"active": false};
    RFC 6750 §3.1: userinfo answers 401 invalid_token."""
    d, _, _, secret = env
    req, code = code_for(env, "conf", CONF, scope="openid profile")
    first = redeem(d, req, code, client_secret=secret)
    assert first.status_code == 200, first.text
    at, rt = first.json()["access_token"], first.json()["refresh_token"]
    # Baseline: live before the replay.
    live = introspect(d, at, "conf", secret)
    assert live["active"] is True and live["client_id"] == "conf", live
    assert introspect(d, rt, "conf", secret)["active"] is True
    assert userinfo(d, at).status_code == 200

    second = redeem(d, req, code, client_secret=secret)
    assert_oauth_error(second, 400, "invalid_grant")

    assert introspect(d, at, "conf", secret) == {"active": False}
    assert introspect(d, rt, "conf", secret) == {"active": False}
    u = userinfo(d, at)
    assert u.status_code == 401 and www_authenticate_error(u) == "invalid_token", (u.status_code, u.headers)
    assert_oauth_error(refresh(d, rt, "conf", secret), 400, "invalid_grant")


def test_oidc_code_reuse_by_public_client_revokes_rfc6749_s4_1_2(env):
    """RFC 6749 §4.1.2 for a public client: second redemption invalid_grant;
    the first access token no longer works at userinfo, the refresh token no
    longer refreshes."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB)
    first = redeem(d, req, code)
    assert first.status_code == 200, first.text
    at, rt = first.json()["access_token"], first.json()["refresh_token"]
    assert userinfo(d, at).status_code == 200
    assert_oauth_error(redeem(d, req, code), 400, "invalid_grant")
    assert userinfo(d, at).status_code == 401
    assert_oauth_error(refresh(d, rt, "web"), 400, "invalid_grant")


def test_oidc_unknown_code_is_invalid_grant_rfc6749_s5_2(env):
    """RFC 6749 §5.2: an invalid authorization code -> invalid_grant."""
    d, _, _, _ = env
    req = AuthRequest("web", WEB)
    assert_oauth_error(redeem(d, req, "not-a-code-" + "x" * 32), 400, "invalid_grant")


# ------------------------------------------------------------ PKCE


@pytest.mark.parametrize("case", ["wrong", "missing", "empty", "challenge-itself"])
def test_oidc_pkce_bad_verifier_is_invalid_grant_rfc7636_s4_6(env, case):
    """RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) must equal the stored
    challenge, else invalid_grant; a missing verifier cannot match (RFC 7636
    §4.5 REQUIRED; RFC 9700 §2.1.1). RFC 6749 §4.1.2: the code is presented
    once, so the failed presentation by its own client spent it and the
    right verifier afterwards fails too; a fresh code with the right
    verifier works, so the refusal was about the verifier."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB)
    over = {"wrong": {"code_verifier": new_verifier()},
            "missing": {"code_verifier": None},
            "empty": {"code_verifier": ""},
            "challenge-itself": {"code_verifier": s256(req.verifier)}}[case]
    assert_oauth_error(redeem(d, req, code, **over), 400, "invalid_grant")
    assert_oauth_error(redeem(d, req, code), 400, "invalid_grant")
    req, code = code_for(env, "web", WEB)
    assert redeem(d, req, code).status_code == 200


def test_oidc_pkce_verifier_of_another_request_is_invalid_grant_rfc7636_s4_6(env):
    """RFC 7636 §4.6 / RFC 9700 §4.5 (code injection): two codes, each bound
    to its own challenge; swapping the verifiers fails both ways."""
    d, _, _, _ = env
    req_a, code_a = code_for(env, "web", WEB)
    req_b, code_b = code_for(env, "web", WEB)
    assert_oauth_error(redeem(d, req_a, code_a, code_verifier=req_b.verifier), 400, "invalid_grant")
    assert_oauth_error(redeem(d, req_b, code_b, code_verifier=req_a.verifier), 400, "invalid_grant")


@pytest.mark.parametrize("verifier", [
    pytest.param("a" * 42, id="42-chars"),
    pytest.param("a" * 129, id="129-chars"),
    pytest.param("a" * 42 + "!", id="bad-char"),
    pytest.param("a" * 42 + "/", id="slash"),
])
def test_oidc_pkce_verifier_syntax_rfc7636_s4_1(env, verifier):
    """RFC 7636 §4.1: code_verifier = 43*128 unreserved characters. A verifier
    outside that syntax is refused (invalid_grant) even though the challenge
    was computed from it."""
    d, b, _, _ = env
    req = AuthRequest("web", WEB)
    params = req.params()
    params["code_challenge"] = s256(verifier)
    r = b.get("/authorize", params=params)
    assert r.status_code == 303, r.text[:300]
    q = query_of(r.headers["Location"])
    assert "code" in q, q
    assert_oauth_error(redeem(d, req, q["code"], code_verifier=verifier), 400, "invalid_grant")


# ------------------------------------------------------------ binding to client and redirect_uri


def test_oidc_code_of_another_client_is_invalid_grant_rfc6749_s4_1_3(env):
    """RFC 6749 §4.1.3: the code must have been issued to the authenticated
    client; another public client presenting it (with the right verifier and
    redirect_uri) gets invalid_grant."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB)
    r = redeem(d, req, code, client_id="web2")
    assert_oauth_error(r, 400, "invalid_grant")


def test_oidc_code_of_public_client_redeemed_by_confidential_is_invalid_grant_rfc6749_s4_1_3(env):
    """RFC 6749 §4.1.3: a confidential client, properly authenticated, cannot
    redeem a code issued to another client."""
    d, _, _, secret = env
    req, code = code_for(env, "web", WEB)
    r = redeem(d, AuthRequest("conf", WEB, verifier=req.verifier), code, client_secret=secret)
    assert_oauth_error(r, 400, "invalid_grant")


def test_oidc_confidential_client_must_authenticate_rfc6749_s4_1_3(env):
    """RFC 6749 §4.1.3 / §3.2.1: a confidential client's code redeemed with
    only client_id (no secret) -> invalid_client (401, §5.2)."""
    d, _, _, _ = env
    req, code = code_for(env, "conf", CONF)
    assert_oauth_error(redeem(d, req, code), 401, "invalid_client")


def test_oidc_redirect_uri_mismatch_at_token_is_invalid_grant_rfc6749_s4_1_3(env):
    """RFC 6749 §4.1.3 / §5.2: redirect_uri at the token endpoint must be
    identical to the one in the authorization request -> invalid_grant."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB)
    assert_oauth_error(redeem(d, req, code, redirect_uri=WEB + "/"), 400, "invalid_grant")


def test_oidc_redirect_uri_missing_at_token_is_invalid_request_rfc6749_s4_1_3(env):
    """RFC 6749 §4.1.3: redirect_uri is REQUIRED at the token endpoint when it
    was in the authorization request; missing -> invalid_request (§5.2). The
    failed presentation spent the code (RFC 6749 §4.1.2)."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB)
    assert_oauth_error(redeem(d, req, code, redirect_uri=None), 400, "invalid_request")
    assert_oauth_error(redeem(d, req, code), 400, "invalid_grant")


def test_oidc_code_of_another_client_is_not_spent_rfc6749_s4_1_3(env):
    """RFC 6749 §4.1.3: a presentation by a client that is not the code's
    owner is refused without spending it; the owner can still redeem it."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB)
    assert_oauth_error(redeem(d, req, code, client_id="web2"), 400, "invalid_grant")
    assert redeem(d, req, code).status_code == 200


def test_oidc_loopback_port_must_be_identical_at_token_rfc6749_s4_1_3(env):
    """RFC 8252 §7.3 lets the port vary at /authorize, but RFC 6749 §4.1.3
    still needs the token request's redirect_uri identical to the one used:
    another port -> invalid_grant (and, RFC 6749 §4.1.2, the code is spent);
    the same one works."""
    d, _, _, _ = env
    for other in ("http://127.0.0.1:50002/cb", LOOP):
        req, code = code_for(env, "loop", "http://127.0.0.1:50001/cb")
        assert_oauth_error(redeem(d, req, code, redirect_uri=other), 400, "invalid_grant")
        assert_oauth_error(redeem(d, req, code), 400, "invalid_grant")
    req, code = code_for(env, "loop", "http://127.0.0.1:50001/cb")
    assert redeem(d, req, code).status_code == 200


# ------------------------------------------------------------ expiry


def test_oidc_expired_code_is_invalid_grant_rfc6749_s4_1_2(new_deputy):
    """RFC 6749 §4.1.2: codes MUST expire shortly after issue; with
    DEPUTY_CODE_TTL=1 a code redeemed 2 s later is invalid_grant, one
    redeemed at once works."""
    d = new_deputy({"DEPUTY_CODE_TTL": "1"})
    add_user(d, "alice")
    add_app(d, "web", redirect_uris=[WEB])
    d.start()
    b = Browser(d)
    fresh = AuthRequest("web", WEB)
    q = sign_in_and_allow(b, fresh, "alice")
    assert redeem(d, fresh, q["code"]).status_code == 200
    stale = AuthRequest("web", WEB)
    q = sign_in_and_allow(b, stale, "alice")
    time.sleep(2.05)
    assert_oauth_error(redeem(d, stale, q["code"]), 400, "invalid_grant")
    b.close()


# ------------------------------------------------------------ what comes back


def verify_with_jwks(d: Deputy, token: str) -> tuple[dict, dict]:
    keys = jwk.JWKSet.from_json(requests.get(d.url("/jwks"), timeout=10).text)
    obj = jws.JWS()
    obj.deserialize(token)
    header = obj.jose_header
    obj.verify(keys.get_key(header["kid"]), alg="ES256")
    return header, json.loads(obj.payload)


def test_oidc_token_response_and_id_token_oidc_core_s3_1_3_3(env):
    """OIDC Core §3.1.3.3 (token_type Bearer, id_token, no-store), §2 and
    §3.1.3.7 (ID token: ES256 over /jwks, iss, sub, aud = client_id, azp, exp,
    iat, auth_time, nonce as sent, amr), §3.1.3.6 (at_hash = left half of
    SHA-256 of the access token); RFC 9068 §2 (at+jwt, aud = issuer by
    default, client_id, scope)."""
    d, _, user, _ = env
    req, code = code_for(env, "web", WEB, scope="openid profile email")
    before = int(time.time())
    r = redeem(d, req, code)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"].lower() == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert set(body["scope"].split(" ")) == {"openid", "profile", "email"}
    assert isinstance(body["refresh_token"], str) and len(body["refresh_token"]) >= 32

    h, c = verify_with_jwks(d, body["id_token"])
    assert h["alg"] == "ES256"
    assert c["iss"] == d.issuer
    assert c["sub"] == user["id"]
    assert c["aud"] == "web" or c["aud"] == ["web"]
    assert c["azp"] == "web"
    assert c["nonce"] == req.nonce
    assert c["amr"] == ["pwd"]
    assert before - 5 <= c["iat"] <= time.time() + 5 and c["exp"] > c["iat"]
    assert c["auth_time"] <= c["iat"]
    assert c["at_hash"] == left_half_hash(body["access_token"])

    ah, ac = verify_with_jwks(d, body["access_token"])
    assert ah["typ"] == "at+jwt"
    assert ac["aud"] == d.issuer
    assert ac["client_id"] == "web" and ac["sub"] == user["id"]
    assert set(ac["scope"].split(" ")) == {"openid", "profile", "email"}


def test_oidc_no_nonce_no_nonce_claim_oidc_core_s2(env):
    """OIDC Core §2: nonce is in the ID token only if it was in the request
    (and then unmodified)."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB, nonce=None)
    body = redeem(d, req, code).json()
    assert "nonce" not in jwt_parts(body["id_token"])[1]


def test_oidc_resource_sets_access_token_audience_rfc8707_s2(env):
    """RFC 8707 §2: resource at /authorize (registered for the client) becomes
    the access token's aud; such a token is not for deputy's userinfo
    (RFC 6750 §3.1 invalid_token); the ID token's aud stays the client."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB, extra={"resource": API})
    body = redeem(d, req, code).json()
    assert jwt_parts(body["access_token"])[1]["aud"] == API
    assert jwt_parts(body["id_token"])[1]["aud"] in ("web", ["web"])
    u = userinfo(d, body["access_token"])
    assert u.status_code == 401 and www_authenticate_error(u) == "invalid_token"


def test_oidc_token_request_resource_must_be_the_codes_rfc8707_s2_2(env):
    """RFC 8707 §2.2: `resource` at the token endpoint names the resource the
    access token is for; the code was consented for one resource, so another
    one is 400 invalid_target (not a token silently for the first), and the
    code still works with the right one (or none)."""
    d, _, _, _ = env
    req, code = code_for(env, "web", WEB, extra={"resource": API})
    assert_oauth_error(redeem(d, req, code, resource="https://evil.example"), 400, "invalid_target")
    body = redeem(d, req, code, resource=API).json()
    assert jwt_parts(body["access_token"])[1]["aud"] == API
    req, code = code_for(env, "web", WEB)  # no resource: the token is for deputy
    assert_oauth_error(redeem(d, req, code, resource=API), 400, "invalid_target")
