"""What a relying party learns about the person: a verified email set by the
operator (OIDC Core §5.1 `email_verified`), the profile/email claims in the
ID token for clients registered `--id-token-claims` (OIDC Core §5.4), and
the `claims` request parameter (OIDC Core §5.5, §5.5.1). ID tokens are
validated with joserfc against the published JWKS."""

from __future__ import annotations

import json

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import Deputy
from oidc_support import (NO_LOGIN_RATE_LIMIT, PASSWORD, AuthRequest, Browser, add_app, add_user, assert_redirect_to, login,
                          redeem, sign_in_and_allow, start)

WEB = "https://web.example/cb"
PERSON_CLAIMS = ("name", "preferred_username", "email", "email_verified")


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir, NO_LOGIN_RATE_LIMIT)
    users = {
        "vera": d.cli("user", "add", "--username", "vera", "--password-stdin", "--email", "v@x.example",
                      "--name", "Vera V", "--email-verified", input=PASSWORD + "\n"),
        "uma": add_user(d, "uma", email="u@x.example", name="Uma U"),
    }
    add_app(d, "plain", redirect_uris=[WEB])
    d.cli("client", "add", "--id", "rich", "--kind", "app", "--auth", "none", "--redirect-uri", WEB,
          "--grant", "authorization_code", "--grant", "refresh_token", "--id-token-claims")
    d.start()
    yield d, users
    d.stop()


def validated_id_token(d: Deputy, token: str, client_id: str) -> dict:
    """OIDC Core §3.1.3.7 with joserfc: signature by a published key, iss, aud, exp."""
    keys = KeySet.import_key_set(requests.get(d.url("/jwks"), timeout=10).json())
    tok = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": d.issuer},
                          aud={"essential": True, "value": client_id},
                          exp={"essential": True}).validate(tok.claims)
    return dict(tok.claims)


def person_claims(claims: dict) -> dict:
    return {k: v for k, v in claims.items() if k in PERSON_CLAIMS}


def tokens(d: Deputy, client_id: str, username: str, scope: str, **extra) -> dict:
    req = AuthRequest(client_id, WEB, scope=scope, extra=extra)
    q = sign_in_and_allow(Browser(d), req, username)
    r = redeem(d, req, q["code"])
    assert r.status_code == 200, r.text
    return r.json()


def test_user_add_email_verified_reaches_userinfo_oidc_core_s5_1(env):
    """OIDC Core §5.1: `email_verified` true only for an address the operator
    vouched for (`user add --email-verified`); false otherwise."""
    d, users = env
    assert users["vera"]["email_verified"] is True
    assert users["uma"]["email_verified"] is False
    for name, verified in (("vera", True), ("uma", False)):
        t = tokens(d, "plain", name, "openid email")
        r = requests.get(d.url("/userinfo"), headers={"Authorization": f"Bearer {t['access_token']}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["email_verified"] is verified


def test_user_update_changes_email_and_verification_audited_oidc_core_s5_1(module_dir):
    """`user update`: a new address is unverified unless vouched for with it;
    the change is audited (`person_updated`) without the new values."""
    d = Deputy(module_dir / "update", NO_LOGIN_RATE_LIMIT)
    u = add_user(d, "walt", email="w@x.example")
    out = d.cli("user", "update", "walt", "--email-verified")
    assert (out["email"], out["email_verified"]) == ("w@x.example", True)
    out = d.cli("user", "update", "walt", "--email", "w2@x.example", "--name", "Walt W")
    assert (out["email"], out["name"], out["email_verified"]) == ("w2@x.example", "Walt W", False)
    events = d.cli("audit", "--event", "person_updated")
    assert len(events) == 2, events
    assert all(e["person"] == u["id"] for e in events), events
    assert "w2@x.example" not in json.dumps(events)
    r = d.run("user", "update", "nobody", "--name", "N")
    assert r.returncode != 0 and "no user `nobody`" in r.stderr, r.stderr


def test_id_token_claims_per_client_oidc_core_s5_4(env):
    """OIDC Core §5.4: a client registered `--id-token-claims` gets the claims
    of the granted scopes in the ID token; another client only `sub`."""
    d, users = env
    plain = validated_id_token(d, tokens(d, "plain", "vera", "openid profile email")["id_token"], "plain")
    assert plain["sub"] == users["vera"]["id"]
    assert person_claims(plain) == {}
    rich = validated_id_token(d, tokens(d, "rich", "vera", "openid profile email")["id_token"], "rich")
    assert person_claims(rich) == {"name": "Vera V", "preferred_username": "vera", "email": "v@x.example",
                                   "email_verified": True}
    # Only what the granted scopes release.
    rich = validated_id_token(d, tokens(d, "rich", "vera", "openid profile")["id_token"], "rich")
    assert person_claims(rich) == {"name": "Vera V", "preferred_username": "vera"}


def test_refreshed_id_token_keeps_the_claims_oidc_core_s12_2(env):
    """OIDC Core §12.2: the refreshed ID token of such a client carries them too."""
    d, _ = env
    t = tokens(d, "rich", "uma", "openid email")
    r = requests.post(d.token_endpoint, data={"grant_type": "refresh_token", "client_id": "rich",
                                              "refresh_token": t["refresh_token"]}, timeout=10)
    assert r.status_code == 200, r.text
    claims = validated_id_token(d, r.json()["id_token"], "rich")
    assert person_claims(claims) == {"email": "u@x.example", "email_verified": False}


def test_claims_parameter_for_the_id_token_oidc_core_s5_5(env):
    """OIDC Core §5.5: `claims` asks for individual claims in the ID token;
    deputy releases those a granted scope covers (name is asked for without
    the profile scope and stays out); discovery says it is supported."""
    d, _ = env
    meta = requests.get(d.url("/.well-known/openid-configuration"), timeout=10).json()
    assert meta["claims_parameter_supported"] is True
    ask = json.dumps({"id_token": {"email": {"essential": True}, "email_verified": None, "name": None},
                      "userinfo": {"email": None}})
    t = tokens(d, "plain", "vera", "openid email", claims=ask)
    claims = validated_id_token(d, t["id_token"], "plain")
    assert person_claims(claims) == {"email": "v@x.example", "email_verified": True}


@pytest.mark.parametrize("bad", ['{"id_token": []}', "not json", '{"id_token": {"email": 1}}',
                                 '{"id_token": {"sub": {"value": 5}}}'])
def test_malformed_claims_parameter_is_invalid_request_oidc_core_s5_5(env, bad):
    """OIDC Core §3.1.2.6: a malformed parameter is `invalid_request`, sent
    back to the client's redirect URI with its state."""
    d, _ = env
    req = AuthRequest("plain", WEB, extra={"claims": bad})
    q = assert_redirect_to(start(Browser(d), req), WEB)
    assert q["error"] == "invalid_request", q
    assert q["state"] == req.state
    assert "code" not in q


def test_requested_sub_value_answers_only_for_that_person_oidc_core_s5_5_1(env):
    """OIDC Core §5.5.1: with `sub` asked for with a value, no code for any
    other person, neither from a session (prompt=none -> login_required)
    nor after that other person logs in."""
    d, users = env
    b = Browser(d)
    sign_in_and_allow(b, AuthRequest("plain", WEB), "uma")
    for_vera = json.dumps({"id_token": {"sub": {"value": users["vera"]["id"]}}})
    q = assert_redirect_to(start(b, AuthRequest("plain", WEB, extra={"claims": for_vera, "prompt": "none"})), WEB)
    assert q["error"] == "login_required" and "code" not in q, q
    page = start(b, AuthRequest("plain", WEB, extra={"claims": for_vera}))
    assert page.status_code == 200 and "/login" in page.text, page.text[:300]
    q = assert_redirect_to(login(b, page, "uma", PASSWORD), WEB)
    assert q["error"] == "login_required" and "code" not in q, q
    # The person named gets her code, and the ID token names her.
    req = AuthRequest("plain", WEB, extra={"claims": for_vera})
    q = sign_in_and_allow(Browser(d), req, "vera")
    r = redeem(d, req, q["code"])
    assert validated_id_token(d, r.json()["id_token"], "plain")["sub"] == users["vera"]["id"]
