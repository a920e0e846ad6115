"""GET/POST /userinfo (OIDC Core §5.3, §5.4 claims by scope; RFC 6750 §2.1,
§3.1 errors) and RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0
§2, §3, §4)."""

from __future__ import annotations

import time

import pytest
import requests

from conftest import Deputy, jwt_parts
from oidc_support import (NO_LOGIN_RATE_LIMIT, AuthRequest, Browser, FormReader, add_app, add_user,
                          assert_error_page, assert_redirect_to, parse_set_cookie, query_of, raw_set_cookies, redeem,
                          sign_in_and_allow, start, www_authenticate_error)

WEB = "https://web.example/cb"
BYE = "https://web.example/bye"
OTHER = "https://other.example/cb"
OTHER_BYE = "https://other.example/bye"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir, NO_LOGIN_RATE_LIMIT)
    users = {
        "alice": add_user(d, "alice", email="a@x.example", name="Alice A"),
        "bob": add_user(d, "bob", email="b@x.example", name="Bob B"),
        "nomail": add_user(d, "nomail"),
        "gone": add_user(d, "gone", email="g@x.example"),
    }
    add_app(d, "web", redirect_uris=[WEB], post_logout=[BYE], scopes=("notes:read",))
    add_app(d, "other", redirect_uris=[OTHER], post_logout=[OTHER_BYE])
    d.start()
    yield d, users
    d.stop()


def tokens_for(d: Deputy, username: str, scope: str, client_id: str = "web", redirect_uri: str = WEB,
               browser: Browser | None = None) -> dict:
    b = browser or Browser(d)
    req = AuthRequest(client_id, redirect_uri, scope=scope)
    q = sign_in_and_allow(b, req, username)
    r = redeem(d, req, q["code"])
    assert r.status_code == 200, r.text
    return r.json()


def userinfo(d: Deputy, token: str | None, method: str = "GET", **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.request(method, d.url("/userinfo"), headers=headers, timeout=10, **kw)


# ------------------------------------------------------------ userinfo


@pytest.mark.parametrize("scope,expected", [
    ("openid", {}),
    ("openid profile", {"preferred_username": "alice", "name": "Alice A"}),
    ("openid email", {"email": "a@x.example", "email_verified": False}),
    ("openid profile email", {"preferred_username": "alice", "name": "Alice A", "email": "a@x.example",
                              "email_verified": False}),
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_oidc_userinfo_claims_by_scope_oidc_core_s5_4(env, scope, expected, method):
    """OIDC Core §5.3.1 (GET and POST MUST be supported), §5.3.2 (JSON, sub
    always), §5.4 (profile -> name, preferred_username; email -> email,
    email_verified); nothing beyond what the scopes grant."""
    d, users = env
    t = tokens_for(d, "alice", scope)
    r = userinfo(d, t["access_token"], method)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert "no-store" in r.headers.get("Cache-Control", "")
    assert r.json() == {"sub": users["alice"]["id"], **expected}
    # OIDC Core §5.3.2: sub equals the ID token's sub.
    assert jwt_parts(t["id_token"])[1]["sub"] == r.json()["sub"]


def test_oidc_userinfo_omits_claims_the_person_lacks_oidc_core_s5_3_2(env):
    """OIDC Core §5.3.2: claims without a value are omitted, not null."""
    d, users = env
    t = tokens_for(d, "nomail", "openid email profile")
    body = userinfo(d, t["access_token"]).json()
    assert body == {"sub": users["nomail"]["id"], "preferred_username": "nomail"}


@pytest.mark.parametrize("authorization", [None, "Basic d2ViOng="], ids=["none", "other-scheme"])
def test_oidc_userinfo_without_token_is_401_without_error_rfc6750_s3_1(env, authorization):
    """RFC 6750 §3.1: a request without authentication (no Authorization
    header, or an unsupported scheme) gets 401 with a Bearer challenge; the
    response SHOULD NOT carry an error code - in the header or the body."""
    d, _ = env
    headers = {"Authorization": authorization} if authorization else {}
    r = requests.get(d.url("/userinfo"), headers=headers, timeout=10)
    assert r.status_code == 401
    challenge = r.headers.get("WWW-Authenticate", "")
    assert challenge.split(" ")[0] == "Bearer", challenge
    assert "error=" not in challenge
    assert r.content == b"" or r.json() == {}, r.text


def bad_tokens(d: Deputy, t: dict) -> dict:
    at = t["access_token"]
    h, p, s = at.split(".")
    flipped = s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB")
    return {
        "garbage": "not-a-token",
        "tampered-signature": f"{h}.{p}.{flipped}",
        "alg-none": f"{h}.{p}.",
        "id-token": t["id_token"],
        "refresh-token": t["refresh_token"],
    }


@pytest.mark.parametrize("kind", ["garbage", "tampered-signature", "alg-none", "id-token", "refresh-token"])
def test_oidc_userinfo_invalid_token_401_rfc6750_s3_1(env, kind):
    """RFC 6750 §3.1: an invalid, tampered, or wrong-type token (an ID token
    or refresh token is not an access token, RFC 9068 §4) -> 401 with
    WWW-Authenticate: Bearer error="invalid_token"."""
    d, _ = env
    t = tokens_for(d, "alice", "openid")
    r = userinfo(d, bad_tokens(d, t)[kind])
    assert r.status_code == 401, (r.status_code, r.text)
    assert www_authenticate_error(r) == "invalid_token", r.headers.get("WWW-Authenticate")
    assert userinfo(d, t["access_token"]).status_code == 200  # control


def test_oidc_userinfo_without_openid_scope_403_rfc6750_s3_1(env):
    """OIDC Core §5.3 (userinfo needs an openid-scoped token) / RFC 6750
    §3.1: a valid token without openid -> 403 insufficient_scope."""
    d, _ = env
    t = tokens_for(d, "alice", "notes:read")
    r = userinfo(d, t["access_token"])
    assert r.status_code == 403, (r.status_code, r.text)
    assert www_authenticate_error(r) == "insufficient_scope"


def test_oidc_userinfo_token_in_query_not_accepted_rfc9700_s4_3_2(env):
    """RFC 6750 §2.3 (query transport is optional) and RFC 9700 §4.3.2 /
    OAuth 2.1 §5.2 (no access tokens in URIs): ?access_token= is not a
    credential -> 401."""
    d, _ = env
    t = tokens_for(d, "alice", "openid")
    r = requests.get(d.url("/userinfo"), params={"access_token": t["access_token"]}, timeout=10)
    assert r.status_code == 401


def test_oidc_userinfo_after_person_disabled_401_rfc6750_s3_1(env):
    """RFC 6750 §3.1: once the person is disabled (`deputy user disable`, which
    revokes what was issued) the access token is invalid_token."""
    d, users = env
    t = tokens_for(d, "gone", "openid email")
    assert userinfo(d, t["access_token"]).status_code == 200
    d.cli("user", "disable", "gone")
    r = userinfo(d, t["access_token"])
    assert r.status_code == 401 and www_authenticate_error(r) == "invalid_token"


# ------------------------------------------------------------ logout


def session_alive(d: Deputy, b: Browser) -> bool:
    req = AuthRequest("web", WEB, extra={"prompt": "none"})
    q = assert_redirect_to(start(b, req), WEB)
    assert q.get("iss") == d.issuer
    if q.get("error") == "login_required":
        return False
    assert q.get("code"), q
    return True


def session_cleared(r: requests.Response) -> bool:
    for h in raw_set_cookies(r):
        name, value, attrs = parse_set_cookie(h)
        if name == "deputy_session":
            return value == "" or attrs.get("max-age") == "0"
    return False


def test_oidc_logout_with_id_token_hint_rp_initiated_logout_s2_s3(env):
    """RP-Initiated Logout 1.0 §2 (id_token_hint identifies client and person:
    logout without asking), §3 (redirect to the registered
    post_logout_redirect_uri with state unchanged): 303 there, the session
    cookie cleared and the session over server-side."""
    d, _ = env
    b = Browser(d)
    t = tokens_for(d, "alice", "openid", browser=b)
    assert session_alive(d, b)
    kept = dict(b.cookies)
    r = b.get("/logout", params={"id_token_hint": t["id_token"], "post_logout_redirect_uri": BYE,
                                 "state": "bye state/1"})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    loc = r.headers["Location"]
    assert loc.split("?")[0] == BYE
    assert query_of(loc) == {"state": "bye state/1"}
    assert session_cleared(r)
    assert not session_alive(d, b)
    # The old cookie value no longer names a session (ended server-side).
    replay = Browser(d)
    replay.cookies.update(kept)
    assert not session_alive(d, replay)


def test_oidc_logout_post_with_id_token_hint_rp_initiated_logout_s2(env):
    """RP-Initiated Logout 1.0 §2: the OP MUST support POST (form) as well as
    GET at the end_session_endpoint."""
    d, _ = env
    b = Browser(d)
    t = tokens_for(d, "alice", "openid", browser=b)
    r = b.post("/logout", {"id_token_hint": t["id_token"], "post_logout_redirect_uri": BYE, "state": "s"})
    assert r.status_code == 303
    assert r.headers["Location"] == BYE + "?state=s"
    assert not session_alive(d, b)


@pytest.mark.parametrize("uri", [
    pytest.param("https://evil.example/bye", id="unregistered"),
    pytest.param(BYE + "/", id="trailing-slash"),
    pytest.param(BYE + "?x=1", id="extra-query"),
    pytest.param(OTHER_BYE, id="another-clients"),
    pytest.param(WEB, id="login-redirect-uri"),
])
def test_oidc_logout_unregistered_redirect_is_error_page_rp_initiated_logout_s3(env, uri):
    """RP-Initiated Logout 1.0 §3: post_logout_redirect_uri MUST exactly match
    one registered for the client (identified by the id_token_hint); otherwise
    the OP MUST NOT redirect: 400 page, no Location, the session lives on."""
    d, _ = env
    b = Browser(d)
    t = tokens_for(d, "alice", "openid", browser=b)
    r = b.get("/logout", params={"id_token_hint": t["id_token"], "post_logout_redirect_uri": uri, "state": "s"})
    assert_error_page(r, 400)
    assert session_alive(d, b)


def test_oidc_logout_tampered_id_token_hint_is_error_page_rp_initiated_logout_s2(env):
    """RP-Initiated Logout 1.0 §2/§4: the OP validates id_token_hint (it must
    be an ID token it issued); a tampered one -> 400 page, no redirect, the
    session lives on."""
    d, _ = env
    b = Browser(d)
    t = tokens_for(d, "alice", "openid", browser=b)
    h, p, s = t["id_token"].split(".")
    bad = f"{h}.{p}.{s[:-4]}{'AAAA' if not s.endswith('AAAA') else 'BBBB'}"
    r = b.get("/logout", params={"id_token_hint": bad, "post_logout_redirect_uri": BYE, "state": "s"})
    assert_error_page(r, 400)
    assert session_alive(d, b)


def test_oidc_logout_client_id_must_match_hint_rp_initiated_logout_s2(env):
    """RP-Initiated Logout 1.0 §2: when both client_id and id_token_hint are
    given, the client_id must match the hint's aud; otherwise 400 page."""
    d, _ = env
    b = Browser(d)
    t = tokens_for(d, "alice", "openid", browser=b)
    r = b.get("/logout", params={"id_token_hint": t["id_token"], "client_id": "other",
                                 "post_logout_redirect_uri": OTHER_BYE})
    assert_error_page(r, 400)
    assert session_alive(d, b)


def test_oidc_logout_without_hint_asks_for_confirmation_rp_initiated_logout_s2(env):
    """RP-Initiated Logout 1.0 §2 / §6 (logout CSRF): without an id_token_hint
    the OP asks the person; the confirmation form needs its CSRF token (a
    forged POST does not log out); the genuine form does."""
    d, _ = env
    b = Browser(d)
    tokens_for(d, "alice", "openid", browser=b)
    r = b.get("/logout", params={"client_id": "web", "post_logout_redirect_uri": BYE, "state": "st"})
    assert r.status_code == 200, r.status_code
    assert "Location" not in r.headers
    f = FormReader(r.text).form("/logout")
    assert f.method == "post"
    assert f.inputs["confirm"] == "yes" and f.input_types["csrf"] == "hidden" and len(f.inputs["csrf"]) >= 22
    assert f.button("sign-out").get("type") == "submit"
    assert session_alive(d, b)
    # A forged confirmation (no or wrong csrf) does not end the session.
    for forged in ({**f.inputs, "csrf": "x" * len(f.inputs["csrf"])}, {k: v for k, v in f.inputs.items()
                                                                        if k != "csrf"}):
        fr = b.post("/logout", forged)
        assert fr.status_code == 200 and "Location" not in fr.headers
        assert session_alive(d, b)
    done = b.post("/logout", f.inputs)
    assert done.status_code == 303, done.status_code
    assert done.headers["Location"] == BYE + "?state=st"
    assert not session_alive(d, b)


def test_oidc_logout_hint_for_another_person_asks_rp_initiated_logout_s2(env):
    """RP-Initiated Logout 1.0 §2: if the id_token_hint's person is not the one
    signed in, the OP must not silently log out the current person: it asks."""
    d, _ = env
    bob_tokens = tokens_for(d, "bob", "openid")
    b = Browser(d)
    tokens_for(d, "alice", "openid", browser=b)
    r = b.get("/logout", params={"id_token_hint": bob_tokens["id_token"], "post_logout_redirect_uri": BYE})
    assert r.status_code == 200 and "Location" not in r.headers, r.status_code
    assert FormReader(r.text).form("/logout")
    assert session_alive(d, b)


def test_oidc_logout_hint_of_an_ended_session_asks_rp_initiated_logout_s2(env):
    """RP-Initiated Logout 1.0 §2: the OP MUST ask the person whether to log
    out when the id_token_hint does not belong to the current OP session. An
    ID token of the same person from an earlier, ended session asks (and the
    session lives on); an ID token of the current session - refreshed ones
    included - still logs out at once. (auth_time counts whole seconds, so
    the second login comes a second later.)"""
    d, _ = env
    b = Browser(d)
    old = tokens_for(d, "alice", "openid", browser=b)
    r = b.get("/logout", params={"id_token_hint": old["id_token"], "post_logout_redirect_uri": BYE})
    assert r.status_code == 303 and not session_alive(d, b)
    time.sleep(1.1)
    new = tokens_for(d, "alice", "openid", browser=b)
    r = b.get("/logout", params={"id_token_hint": old["id_token"], "post_logout_redirect_uri": BYE})
    assert r.status_code == 200 and "Location" not in r.headers, (r.status_code, r.headers.get("Location"))
    assert FormReader(r.text).form("/logout")
    assert session_alive(d, b)
    refreshed = requests.post(d.token_endpoint, data={"grant_type": "refresh_token", "client_id": "web",
                                                      "refresh_token": new["refresh_token"]}, timeout=10)
    assert refreshed.status_code == 200, refreshed.text
    r = b.get("/logout", params={"id_token_hint": refreshed.json()["id_token"], "post_logout_redirect_uri": BYE})
    assert r.status_code == 303, (r.status_code, r.text[:200])
    assert not session_alive(d, b)
