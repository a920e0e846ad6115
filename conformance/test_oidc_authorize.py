"""GET /authorize for people: redirect URI matching (RFC 6749 §3.1.2.3,
RFC 9700 §2.1 and §4.1.3, RFC 8252 §7.3 and §8.3), errors that never redirect
(RFC 6749 §4.1.2.1), errors that do, with state and iss (RFC 6749 §4.1.2.1,
RFC 9207 §2), PKCE at the authorization endpoint (RFC 7636 §4.3/§4.4.1,
RFC 9700 §2.1.1), prompt / max_age / login_hint (OIDC Core §3.1.2.1,
§3.1.2.6)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest

from conftest import Deputy, jwt_parts
from oidc_support import (NO_LOGIN_RATE_LIMIT, PASSWORD, AuthRequest, Browser, FormReader, add_app, add_user,
                          assert_error_page, assert_redirect_to, consent, login, redeem, s256, sign_in_and_allow, start)

APP = "https://app.example/cb"
LOOP = "http://127.0.0.1/cb"
API = "https://api.example/notes"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir, NO_LOGIN_RATE_LIMIT)
    add_user(d, "alice", email="a@x.example", name="Alice A")
    add_user(d, "bob")
    add_app(d, "web", name="Notes Web", redirect_uris=[APP], audiences=[API])
    add_app(d, "loop", redirect_uris=[LOOP])
    add_app(d, "two", redirect_uris=["https://two.example/a", "https://two.example/b"])
    add_app(d, "other", redirect_uris=["https://other.example/cb"])
    d.start()
    yield d
    d.stop()


@pytest.fixture
def browser(env):
    b = Browser(env)
    yield b
    b.close()


def assert_error_redirect(resp, redirect_uri: str, issuer: str, error: str, state: str | None) -> dict:
    """RFC 6749 §4.1.2.1: error (and error_description) in the query, state
    exactly as sent; RFC 9207 §2: iss; never a code."""
    q = assert_redirect_to(resp, redirect_uri)
    assert q.get("error") == error, q
    assert "code" not in q, q
    assert q.get("iss") == issuer, q
    if state is None:
        assert "state" not in q, q
    else:
        assert q.get("state") == state, q
    if "error_description" in q:
        assert all(c == " " or c == "!" or 0x23 <= ord(c) <= 0x5B or 0x5D <= ord(c) <= 0x7E
                   for c in q["error_description"]), q
    return q


# ------------------------------------------------ redirect URIs: never redirect


NEAR_MISSES = [
    pytest.param("https://app.example/cb/", id="trailing-slash"),
    pytest.param("https://app.example/CB", id="path-case"),
    pytest.param("https://APP.example/cb", id="host-case"),
    pytest.param("https://app.example/cb?x=1", id="extra-query"),
    pytest.param("https://app.example:8443/cb", id="other-port"),
    pytest.param("https://app.example:443/cb", id="explicit-default-port"),
    pytest.param("https://app.example/cb#frag", id="fragment"),
    pytest.param("https://app.example/c", id="prefix"),
    pytest.param("https://app.example/cb2", id="suffix-path"),
    pytest.param("https://app.example/cb/evil", id="sub-path"),
    pytest.param("https://app.example.evil.example/cb", id="suffix-host"),
    pytest.param("https://evil.example/https://app.example/cb", id="embedded"),
    pytest.param("http://app.example/cb", id="http-scheme"),
    pytest.param("https://app.example/c%62", id="percent-encoded"),
    pytest.param("https://app.example/x/../cb", id="dot-segments"),
    pytest.param("https://app.example@evil.example/cb", id="userinfo"),
]


@pytest.mark.parametrize("uri", NEAR_MISSES)
def test_oidc_redirect_uri_near_miss_is_error_page_rfc9700_s4_1_3(env, browser, uri):
    """RFC 9700 §2.1 / §4.1.3 and RFC 6749 §3.1.2.3: redirect URIs are compared
    by exact string match; RFC 6749 §4.1.2.1: on mismatch the server MUST NOT
    redirect, it informs the person (400 HTML page, no Location)."""
    r = start(browser, AuthRequest("web", uri))
    assert_error_page(r, 400)
    assert "/login" not in r.text


def test_oidc_registered_redirect_uri_is_accepted_rfc6749_s3_1_2_3(env, browser):
    """Control for the near misses: the exact registered URI gets the login page."""
    r = start(browser, AuthRequest("web", APP))
    assert r.status_code == 200
    assert FormReader(r.text).form("/login")


@pytest.mark.parametrize("client_id", ["nobody", "", "web "], ids=["unknown", "empty", "trailing-space"])
def test_oidc_unknown_client_is_error_page_rfc6749_s4_1_2_1(env, browser, client_id):
    """RFC 6749 §4.1.2.1: an invalid client_id is shown to the person, never
    redirected (even to a redirect_uri registered for another client)."""
    r = start(browser, AuthRequest(client_id, APP))
    assert_error_page(r, 400)


def test_oidc_missing_client_id_is_error_page_rfc6749_s4_1_2_1(env, browser):
    """RFC 6749 §4.1.2.1: missing client_id -> error page, no redirect."""
    r = start(browser, AuthRequest("web", APP, extra={"client_id": None}))
    assert_error_page(r, 400)


def test_oidc_redirect_uri_of_another_client_is_error_page_rfc6749_s4_1_2_1(env, browser):
    """RFC 6749 §3.1.2.4/§4.1.2.1: a URI registered for another client does not
    match this one."""
    r = start(browser, AuthRequest("web", "https://other.example/cb"))
    assert_error_page(r, 400)


def test_oidc_omitted_redirect_uri_with_two_registered_is_error_page_rfc6749_s3_1_2_3(env, browser):
    """RFC 6749 §3.1.2.3: with several registered redirect URIs the request
    MUST include one; without it, error page."""
    r = start(browser, AuthRequest("two", None))
    assert_error_page(r, 400)


def test_oidc_omitted_redirect_uri_uses_the_only_one_rfc6749_s4_1_3(env, browser):
    """RFC 6749 §3.1.2.3: one registered URI may be omitted; §4.1.3: the token
    request then needs no redirect_uri. The code lands at the registered URI."""
    req = AuthRequest("web", None)
    r = start(browser, req)
    r = login(browser, r, "alice", PASSWORD)
    if "/consent" in r.text:
        r = consent(browser, r)
    q = assert_redirect_to(r, APP)
    assert q["state"] == req.state and q["iss"] == env.issuer
    tok = redeem(env, req, q["code"])
    assert tok.status_code == 200, tok.text


def test_oidc_loopback_any_port_rfc8252_s7_3(env, browser):
    """RFC 8252 §7.3: for a registered loopback IP redirect URI the server MUST
    allow any port; the code goes to the port asked for and redeems with it."""
    uri = "http://127.0.0.1:54321/cb"
    req = AuthRequest("loop", uri)
    q = sign_in_and_allow(browser, req, "alice")
    tok = redeem(env, req, q["code"])
    assert tok.status_code == 200, tok.text


@pytest.mark.parametrize("uri", [
    pytest.param("http://127.0.0.1:54321/other", id="other-path"),
    pytest.param("http://127.0.0.1:54321/cb/", id="trailing-slash"),
    pytest.param("http://127.0.0.1:54321/cb?x=1", id="extra-query"),
    pytest.param("http://localhost:54321/cb", id="localhost-name"),
    pytest.param("http://[::1]:54321/cb", id="other-loopback-ip"),
    pytest.param("https://127.0.0.1:54321/cb", id="https"),
    pytest.param("http://127.0.0.1.evil.example:54321/cb", id="suffix-host"),
    pytest.param("http://127.0.0.1:54321@evil.example/cb", id="userinfo-trick"),
    pytest.param("http://127.0.0.2:54321/cb", id="other-127"),
])
def test_oidc_loopback_only_the_port_varies_rfc8252_s7_3(env, browser, uri):
    """RFC 8252 §7.3 / §8.3: only the port of a loopback IP redirect URI may
    vary; host, scheme, path and query still match exactly -> error page."""
    r = start(browser, AuthRequest("loop", uri))
    assert_error_page(r, 400)


@pytest.mark.parametrize("port", ["65536", "99999", "00080", "0"])
def test_oidc_loopback_port_out_of_range_is_error_page_rfc8252_s7_3(env, browser, port):
    """RFC 8252 §7.3 lets the port of a loopback redirect URI vary, but only
    over real ports (1-65535, RFC 6335 §6) written plainly: anything else is
    an unregistered redirect URI -> 400 page (RFC 6749 §4.1.2.1), never a
    redirect and never a 5xx."""
    r = start(browser, AuthRequest("loop", f"http://127.0.0.1:{port}/cb"))
    assert_error_page(r, 400)


# ------------------------------------------------ errors that redirect: state and iss


VALID_CHALLENGE = s256("a" * 43)

REDIRECTED_ERRORS = [
    pytest.param({"code_challenge": None}, "invalid_request", id="pkce-missing-challenge"),
    pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="pkce-plain"),
    pytest.param({"code_challenge_method": None}, "invalid_request", id="pkce-missing-method"),
    pytest.param({"code_challenge_method": "s256"}, "invalid_request", id="pkce-method-case"),
    pytest.param({"code_challenge": "short"}, "invalid_request", id="pkce-short-challenge"),
    pytest.param({"code_challenge": VALID_CHALLENGE[:-1] + "+"}, "invalid_request", id="pkce-bad-char"),
    pytest.param({"code_challenge": VALID_CHALLENGE + "A"}, "invalid_request", id="pkce-44-chars"),
    pytest.param({"response_type": "token"}, "unsupported_response_type", id="response-type-token"),
    pytest.param({"response_type": "code id_token"}, "unsupported_response_type", id="response-type-hybrid"),
    pytest.param({"response_type": None}, "invalid_request", id="response-type-missing"),
    pytest.param({"scope": "openid admin"}, "invalid_scope", id="scope-not-allowed"),
    pytest.param({"resource": "https://evil.example/"}, "invalid_target", id="resource-not-registered"),
    pytest.param({"prompt": "none"}, "login_required", id="prompt-none-no-session"),
    pytest.param({"prompt": "none login"}, "invalid_request", id="prompt-none-combined"),
    pytest.param({"max_age": "-1"}, "invalid_request", id="max-age-negative"),
    pytest.param({"response_mode": "fragment"}, "invalid_request", id="response-mode-fragment"),
    pytest.param({"response_mode": "jwt"}, "invalid_request", id="response-mode-jwt"),
]


@pytest.mark.parametrize("change,error", REDIRECTED_ERRORS)
def test_oidc_authorize_error_redirects_with_state_and_iss_rfc9207_s2(env, browser, change, error):
    """RFC 6749 §4.1.2.1 (error codes), RFC 7636 §4.4.1 and RFC 9700 §2.1.1
    (PKCE S256 required: invalid_request), RFC 8707 §2 (invalid_target), OIDC
    Core §3.1.2.6 (login_required), §3.1.2.1 (prompt=none with another value),
    OAuth 2.0 Multiple Response Types §2.1 (only query and form_post served):
    303 to the registered URI with error, the exact state, and iss (RFC 9207
    §2); no code."""
    req = AuthRequest("web", APP, extra=change)
    r = start(browser, req)
    assert_error_redirect(r, APP, env.issuer, error, req.state)


def test_oidc_unimplemented_oidc_scopes_are_ignored_oidc_core_s5_4(env, browser):
    """OIDC Core §3.1.2.1 / §5.4 / §11: scope values the OP does not
    understand SHOULD be ignored: offline_access, phone and address (defined
    by OIDC, not implemented by deputy) are dropped, not invalid_scope; the
    tokens carry the rest. Other unknown scopes stay invalid_scope (RFC 6749
    §3.3, see REDIRECTED_ERRORS)."""
    req = AuthRequest("web", APP, scope="openid offline_access phone address notes:read")
    q = sign_in_and_allow(browser, req, "alice")
    tok = redeem(env, req, q["code"])
    assert tok.status_code == 200, tok.text
    assert tok.json()["scope"] == "openid notes:read"
    assert jwt_parts(tok.json()["access_token"])[1]["scope"] == "openid notes:read"
    only_ignored = AuthRequest("web", APP, scope="offline_access")
    assert_error_redirect(start(browser, only_ignored), APP, env.issuer, "invalid_scope", only_ignored.state)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("repeat,error", [
    pytest.param([("nonce", "n2")], "invalid_request", id="nonce"),
    pytest.param([("prompt", "login"), ("prompt", "login")], "invalid_request", id="prompt"),
    pytest.param([("resource", API), ("resource", API)], "invalid_target", id="resource"),
])
def test_oidc_repeated_parameter_redirects_rfc6749_s4_1_2_1(env, browser, method, repeat, error):
    """RFC 6749 §3.1 (no parameter more than once) and §4.1.2.1: with
    client_id and redirect_uri each sent once and valid, the error goes back
    to the client with state and iss (RFC 9207 §2). Several resources are
    invalid_target (RFC 8707 §2: deputy takes one per request)."""
    req = AuthRequest("web", APP)
    body = urlencode(list(req.params().items()) + repeat)
    if method == "GET":
        r = browser.get("/authorize?" + body)
    else:
        r = browser.post("/authorize", body)
    assert_error_redirect(r, APP, env.issuer, error, req.state)


@pytest.mark.parametrize("repeat", [
    pytest.param([("client_id", "web")], id="client_id"),
    pytest.param([("redirect_uri", APP)], id="redirect_uri"),
])
def test_oidc_repeated_client_id_or_redirect_uri_is_error_page_rfc6749_s4_1_2_1(env, browser, repeat):
    """RFC 6749 §4.1.2.1: a repeated client_id or redirect_uri leaves the
    client or its redirect URI in doubt: 400 page, never a redirect."""
    body = urlencode(list(AuthRequest("web", APP).params().items()) + repeat)
    assert_error_page(browser.post("/authorize", body), 400)


def id_token_of(env, browser, username: str) -> str:
    req = AuthRequest("web", APP)
    tok = redeem(env, req, sign_in_and_allow(browser, req, username)["code"])
    assert tok.status_code == 200, tok.text
    return tok.json()["id_token"]


def test_oidc_id_token_hint_not_ours_is_invalid_request_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1: id_token_hint is an ID token the OP issued; one
    that does not verify (garbage, a tampered signature) is invalid_request,
    redirected with state and iss (RFC 6749 §4.1.2.1, RFC 9207 §2)."""
    idt = id_token_of(env, Browser(env), "alice")
    h, p, sig = idt.split(".")
    tampered = f"{h}.{p}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    for hint in ("garbage", tampered):
        req = AuthRequest("web", APP, extra={"id_token_hint": hint})
        assert_error_redirect(start(browser, req), APP, env.issuer, "invalid_request", req.state)


def test_oidc_id_token_hint_for_another_person_needs_login_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1 (id_token_hint) and §3.1.2.6: when the person the
    hint names is not the one signed in, prompt=none is login_required and
    otherwise the login page is shown; the signed-in person's own hint gets a
    code without a page."""
    bob_hint = id_token_of(env, Browser(env), "bob")
    alice_hint = id_token_of(env, browser, "alice")
    req = AuthRequest("web", APP, extra={"prompt": "none", "id_token_hint": bob_hint})
    assert_error_redirect(start(browser, req), APP, env.issuer, "login_required", req.state)
    r = start(browser, AuthRequest("web", APP, extra={"id_token_hint": bob_hint}))
    assert r.status_code == 200
    assert FormReader(r.text).form("/login")
    req = AuthRequest("web", APP, extra={"prompt": "none", "id_token_hint": alice_hint})
    q = assert_redirect_to(start(browser, req), APP)
    assert q.get("code") and q["state"] == req.state, q


def test_oidc_response_mode_query_is_accepted_oauth_multiple_response_types_s2_1(env, browser):
    """OAuth 2.0 Multiple Response Types §2.1 / RFC 8414 response_modes_supported
    ["query"]: an explicit response_mode=query works like the default."""
    q = sign_in_and_allow(browser, AuthRequest("web", APP, extra={"response_mode": "query"}), "alice")
    assert q["code"]


def form_post_answer(resp, redirect_uri: str, issuer: str) -> dict[str, str]:
    """Form Post Response Mode §2: a 200 HTML page (never a redirect, never
    cached) with one form POSTing hidden fields to the redirect URI, which
    submits itself with the one script its CSP allows by hash."""
    import base64
    import hashlib
    import re

    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:300]}"
    assert "Location" not in resp.headers
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "no-store" in resp.headers.get("Cache-Control", "")
    forms = FormReader(resp.text).forms
    assert len(forms) == 1 and forms[0].action == redirect_uri and forms[0].method == "post", forms
    assert all(t == "hidden" for t in forms[0].input_types.values()), forms[0].input_types
    scripts = re.findall(r"<script>(.*?)</script>", resp.text, re.S)
    assert len(scripts) == 1, scripts
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = [d.strip() for d in resp.headers["Content-Security-Policy"].split(";")]
    assert f"script-src 'sha256-{digest}'" in csp, csp
    origin = "/".join(redirect_uri.split("/")[:3])
    assert f"form-action {origin}" in csp, csp
    assert "frame-ancestors 'none'" in csp, csp
    fields = forms[0].inputs
    assert fields.get("iss") == issuer, fields
    return fields


def test_oidc_form_post_response_mode_carries_code_state_iss(env, browser):
    """OAuth 2.0 Form Post Response Mode §2 / RFC 8414 response_modes_supported:
    login and consent end in a page that POSTs code, state and iss (RFC 9207
    §2) to the redirect URI; the code redeems once (RFC 6749 §4.1.3); with a
    session and remembered consent the page comes at once."""
    req = AuthRequest("web", APP, extra={"response_mode": "form_post"})
    r = start(browser, req)
    r = login(browser, r, "alice", PASSWORD)
    if "/consent" in r.text:
        r = consent(browser, r)
    fields = form_post_answer(r, APP, env.issuer)
    assert set(fields) == {"code", "state", "iss"} and fields["state"] == req.state, fields
    assert redeem(env, req, fields["code"]).status_code == 200
    again = AuthRequest("web", APP, extra={"response_mode": "form_post"})
    fields = form_post_answer(start(browser, again), APP, env.issuer)
    assert redeem(env, again, fields["code"]).status_code == 200


@pytest.mark.parametrize("change,error", [
    pytest.param({"prompt": "none"}, "login_required", id="prompt-none"),
    pytest.param({"scope": "openid admin"}, "invalid_scope", id="scope"),
    pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="pkce-plain"),
    pytest.param({"response_type": "token"}, "unsupported_response_type", id="response-type"),
])
def test_oidc_form_post_errors_are_posted_too(env, browser, change, error):
    """Form Post Response Mode §2 with RFC 6749 §4.1.2.1: an error for a
    trusted client and redirect URI travels the way the client asked: POSTed,
    with state and iss, never a code."""
    req = AuthRequest("web", APP, extra={"response_mode": "form_post", **change})
    fields = form_post_answer(start(browser, req), APP, env.issuer)
    assert fields["error"] == error and fields["state"] == req.state and "code" not in fields, fields


def test_oidc_form_post_escapes_state(env, browser):
    """Form Post Response Mode §2: the state is returned exactly, as data: a
    value made of HTML cannot add elements to the page."""
    evil = '"><script>alert(1)</script><input name="code" value="x'
    req = AuthRequest("web", APP, state=evil, extra={"response_mode": "form_post", "prompt": "none"})
    r = start(browser, req)
    fields = form_post_answer(r, APP, env.issuer)
    assert fields["state"] == evil and "code" not in fields, fields
    assert "<script>alert" not in r.text


def test_oidc_error_redirect_without_state_omits_state_rfc6749_s4_1_2_1(env, browser):
    """RFC 6749 §4.1.2.1: state is REQUIRED in the response only if it was in
    the request; iss is always there (RFC 9207 §2)."""
    r = start(browser, AuthRequest("web", APP, state=None, extra={"code_challenge_method": "plain"}))
    assert_error_redirect(r, APP, env.issuer, "invalid_request", None)


@pytest.mark.parametrize("param,error", [("request", "request_not_supported"),
                                         ("request_uri", "request_uri_not_supported")])
def test_oidc_request_objects_unsupported_error_codes_oidc_core_s6(env, browser, param, error):
    """OIDC Core §6.1 / §6.2 and §3.1.2.6: an OP that does not support the
    `request` (`request_uri`) parameter MUST return request_not_supported
    (request_uri_not_supported), redirected with state and iss."""
    value = "eyJhbGciOiJub25lIn0.e30." if param == "request" else "https://app.example/req.jwt"
    req = AuthRequest("web", APP, extra={param: value})
    r = start(browser, req)
    assert_error_redirect(r, APP, env.issuer, error, req.state)


def test_oidc_state_round_trips_exactly_rfc6749_s4_1_2(env, browser):
    """RFC 6749 §4.1.2: state is returned exactly as received (reserved and
    non-ASCII characters survive encoding); iss present (RFC 9207 §2)."""
    req = AuthRequest("web", APP, state="a b&c=d/e?f+g%h#i\u00e9")
    q = sign_in_and_allow(browser, req, "alice")
    assert q["state"] == req.state
    assert set(q) == {"code", "state", "iss"}


def test_oidc_deny_redirects_access_denied_rfc6749_s4_1_2_1(env, browser):
    """RFC 6749 §4.1.2.1: the person denies -> access_denied with state and
    iss (RFC 9207 §2), no code."""
    req = AuthRequest("web", APP, scope="openid email")
    r = start(browser, req)
    r = login(browser, r, "bob", PASSWORD)
    r = consent(browser, r, "deny")
    assert_error_redirect(r, APP, env.issuer, "access_denied", req.state)


def test_oidc_prompt_none_without_consent_is_consent_required_oidc_core_s3_1_2_6(env, browser):
    """OIDC Core §3.1.2.6: signed in but consent would have to be shown ->
    consent_required with prompt=none (no page)."""
    r = start(browser, AuthRequest("other", "https://other.example/cb"))
    r = login(browser, r, "bob", PASSWORD)
    assert FormReader(r.text).form("/consent")  # bob has not consented to "web" for profile
    req = AuthRequest("web", APP, scope="openid profile", extra={"prompt": "none"})
    r = start(browser, req)
    assert_error_redirect(r, APP, env.issuer, "consent_required", req.state)


def test_oidc_prompt_none_with_session_and_consent_returns_code_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1 prompt=none: a signed-in person who consented gets
    a code with no page at all."""
    sign_in_and_allow(browser, AuthRequest("web", APP), "alice")
    req = AuthRequest("web", APP, extra={"prompt": "none"})
    r = start(browser, req)
    q = assert_redirect_to(r, APP)
    assert q.get("code") and q["state"] == req.state and q["iss"] == env.issuer
    assert redeem(env, req, q["code"]).status_code == 200


def test_oidc_prompt_login_shows_login_page_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1 prompt=login: the OP SHOULD prompt for
    reauthentication even with a session; afterwards auth_time is new."""
    sign_in_and_allow(browser, AuthRequest("web", APP), "alice")
    r = start(browser, AuthRequest("web", APP, extra={"prompt": "login"}))
    assert r.status_code == 200
    assert FormReader(r.text).form("/login")


def test_oidc_max_age_zero_forces_login_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1 (errata set 2): "max_age=0 is equivalent to
    prompt=login" - a session made within the same second must not satisfy
    it. The login is aligned to the start of a second so the outcome does not
    depend on timing."""
    time.sleep(1.02 - (time.time() % 1))
    sign_in_and_allow(browser, AuthRequest("web", APP), "alice")
    r = start(browser, AuthRequest("web", APP, extra={"max_age": "0"}))
    assert r.status_code == 200 and "/login" in r.text, (
        f"max_age=0 did not force a login: {r.status_code} {r.headers.get('Location')}")


def test_oidc_max_age_exceeded_forces_login_and_auth_time_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1: elapsed time > max_age -> active re-authentication;
    the ID token then carries the new auth_time (§2)."""
    req1 = AuthRequest("web", APP)
    q1 = sign_in_and_allow(browser, req1, "alice")
    t1 = jwt_parts(redeem(env, req1, q1["code"]).json()["id_token"])[1]["auth_time"]
    time.sleep(2.1)
    req2 = AuthRequest("web", APP, extra={"max_age": "1"})
    r = start(browser, req2)
    assert r.status_code == 200 and "/login" in r.text, (r.status_code, r.headers.get("Location"))
    r = login(browser, r, "alice", PASSWORD)
    q2 = assert_redirect_to(r, APP)
    c2 = jwt_parts(redeem(env, req2, q2["code"]).json()["id_token"])[1]
    assert c2["auth_time"] >= t1 + 2


def test_oidc_login_hint_prefills_and_is_escaped_oidc_core_s3_1_2_1(env, browser):
    """OIDC Core §3.1.2.1 login_hint: a hint for the login identifier; shown in
    the username field, HTML-escaped (no markup injection)."""
    hint = 'al"><script>alert(1)</script>'
    r = start(browser, AuthRequest("web", APP, extra={"login_hint": hint}))
    assert r.status_code == 200
    f = FormReader(r.text).form("/login")
    assert f.inputs["username"] == hint
    assert "<script>" not in r.text
