"""The person's pages: login and consent forms bound to a browser with a CSRF
token (RFC 6749 §10.12, OWASP ASVS 4.0 §4.2.2 / §3.5), one generic failure
message (ASVS §2.2 / OWASP Authentication Cheat Sheet "authentication
responses"), failed-login throttling (ASVS §2.2.1, RFC 6585 §4 429 with
Retry-After, RFC 9110 §10.2.3), cookie flags (RFC 6265 §4.1.2.5-6,
RFC 6265bis §4.1.2.7 SameSite; ASVS §3.4), session fixation (ASVS §3.2.1),
clickjacking and caching headers on every HTML page (RFC 6749 §10.13, CSP
Level 2 frame-ancestors, RFC 7034 X-Frame-Options, RFC 9111 §5.2.2.5
no-store, Referrer-Policy W3C §3.1 no-referrer)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from conftest import Deputy
from oidc_support import (GENERIC_LOGIN_ERROR, NO_LOGIN_RATE_LIMIT, PASSWORD, AuthRequest, Browser, FormReader,
                          add_app, add_user, assert_redirect_to, consent, login, parse_set_cookie, raw_set_cookies,
                          sign_in_and_allow, start)

WEB = "https://web.example/cb"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir, NO_LOGIN_RATE_LIMIT)
    for u in ("alice", "bob", "carol", "dave", "erin", "frank"):
        add_user(d, u, email=f"{u}@x.example", name=u.title())
    add_app(d, "web", name="Notes Web", redirect_uris=[WEB], post_logout=["https://web.example/bye"])
    d.start()
    yield d
    d.stop()


@pytest.fixture
def browser(env):
    b = Browser(env)
    yield b
    b.close()


def assert_html_security_headers(r: requests.Response):
    """CSP frame-ancestors 'none' + X-Frame-Options DENY (RFC 6749 §10.13
    clickjacking), Referrer-Policy no-referrer (codes and state never leak
    through Referer, RFC 9700 §4.2.4), Cache-Control no-store (RFC 9111
    §5.2.2.5: pages with CSRF tokens are never cached)."""
    assert r.headers.get("Content-Type", "").startswith("text/html"), r.headers.get("Content-Type")
    csp = r.headers.get("Content-Security-Policy", "")
    directives = {p.strip().split(" ", 1)[0]: p.strip() for p in csp.split(";") if p.strip()}
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert r.headers.get("X-Frame-Options", "").upper() == "DENY"
    assert r.headers.get("Referrer-Policy", "").lower() == "no-referrer"
    assert "no-store" in [v.strip().lower() for v in r.headers.get("Cache-Control", "").split(",")]


def cookie_attrs(r: requests.Response, name: str) -> dict:
    for h in raw_set_cookies(r):
        n, v, attrs = parse_set_cookie(h)
        if n == name:
            return {"value": v, **attrs}
    raise AssertionError(f"no Set-Cookie {name}: {raw_set_cookies(r)}")


def sets_session(r: requests.Response) -> bool:
    return any(parse_set_cookie(h)[0] == "deputy_session" and parse_set_cookie(h)[1]
               for h in raw_set_cookies(r))


def normalized(html: str) -> str:
    """A page with its per-interaction hidden values blanked."""
    return re.sub(r'(name="(?:interaction|csrf)" value=")[^"]*"', r'\1"', html)


# ------------------------------------------------------------ headers on every page


def test_oidc_html_security_headers_on_every_page(env, browser):
    """RFC 6749 §10.13 / RFC 7034 / CSP frame-ancestors, RFC 9111 §5.2.2.5,
    Referrer-Policy: the login page, the 401 login page, the consent page, the
    400 error page, the 403 page, the logout page all carry the headers."""
    pages = {}
    r = start(browser, AuthRequest("web", WEB, extra={"prompt": "consent"}))
    pages["login"] = r
    pages["login-401"] = login(browser, r, "alice", "wrong password!")
    pages["consent"] = login(browser, pages["login-401"], "alice", PASSWORD)
    assert FormReader(pages["consent"].text).form("/consent")
    pages["error-400"] = start(browser, AuthRequest("web", WEB + "/"))
    pages["forbidden-403"] = browser.post("/login", {"interaction": "x", "csrf": "y",
                                                     "username": "a", "password": "b"})
    pages["logout-confirm"] = browser.get("/logout")
    expected = {"login": 200, "login-401": 401, "consent": 200, "error-400": 400, "forbidden-403": 403,
                "logout-confirm": 200}
    for name, resp in pages.items():
        assert resp.status_code == expected[name], (name, resp.status_code)
        try:
            assert_html_security_headers(resp)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from e


def test_oidc_login_page_form_shape(env, browser):
    """OIDC Core §3.1.2.3 (the OP authenticates the person): the login page
    posts username/password to /login over POST, with hidden interaction and
    csrf values and a #sign-in submit button; the password field is
    type=password."""
    r = start(browser, AuthRequest("web", WEB))
    page = FormReader(r.text)
    f = page.form("/login")
    assert f.method == "post"
    assert f.input_types == {"interaction": "hidden", "csrf": "hidden", "username": "text", "password": "password"}
    assert len(f.inputs["csrf"]) >= 22 and len(f.inputs["interaction"]) >= 22
    assert f.button("sign-in").get("type") == "submit"
    assert "Notes Web" in page.text


# ------------------------------------------------------------ cookies


def test_oidc_cookie_flags_rfc6265(env, browser):
    """RFC 6265 §4.1.2.6 HttpOnly and RFC 6265bis §4.1.2.7 SameSite=Lax on both
    the browser-binding cookie and the session cookie, Path=/; with an http
    issuer (dev mode) no Secure flag is claimed."""
    r = start(browser, AuthRequest("web", WEB))
    b = cookie_attrs(r, "deputy_browser")
    r2 = login(browser, r, "alice", PASSWORD)
    s = cookie_attrs(r2, "deputy_session")
    for c in (b, s):
        assert "httponly" in c, c
        assert c.get("samesite", "").lower() == "lax", c
        assert c.get("path") == "/", c
        assert len(c["value"]) >= 22, c
        assert "domain" not in c, c


def test_oidc_session_id_renewed_at_login_owasp_asvs_3_2_1(env, browser):
    """OWASP ASVS 4.0 §3.2.1 (session fixation): a session id planted before
    login is not adopted; login sets a new one."""
    browser.cookies["deputy_session"] = "planted-session-value-0123456789abcdef"
    r = start(browser, AuthRequest("web", WEB))
    r = login(browser, r, "alice", PASSWORD)
    new = cookie_attrs(r, "deputy_session")["value"]
    assert new != "planted-session-value-0123456789abcdef"
    # The planted value does not authenticate anybody.
    other = Browser(env)
    other.cookies["deputy_session"] = "planted-session-value-0123456789abcdef"
    req = AuthRequest("web", WEB, extra={"prompt": "none"})
    q = assert_redirect_to(start(other, req), WEB)
    assert q.get("error") == "login_required"
    other.close()


# ------------------------------------------------------------ CSRF and browser binding


def login_required_for(env, b: Browser) -> bool:
    req = AuthRequest("web", WEB, extra={"prompt": "none"})
    q = assert_redirect_to(start(b, req), WEB)
    return q.get("error") == "login_required"


@pytest.mark.parametrize("case", ["wrong-csrf", "missing-csrf", "missing-interaction", "other-browser",
                                  "no-browser-cookie"])
def test_oidc_login_csrf_refused_403(env, browser, case):
    """RFC 6749 §10.12 and OWASP ASVS §4.2.2 (login CSRF): POST /login with a
    wrong or missing CSRF token, or from another browser than the one that
    started the interaction, is 403 with correct credentials, and no session is
    created (prompt=none still gives login_required)."""
    r = start(browser, AuthRequest("web", WEB))
    f = FormReader(r.text).form("/login")
    data = {"interaction": f.inputs["interaction"], "csrf": f.inputs["csrf"], "username": "bob",
            "password": PASSWORD}
    poster = browser
    if case == "wrong-csrf":
        data["csrf"] = data["csrf"][:-1] + ("A" if data["csrf"][-1] != "A" else "B")
    elif case == "missing-csrf":
        del data["csrf"]
    elif case == "missing-interaction":
        del data["interaction"]
    elif case == "other-browser":
        poster = Browser(env)
        poster.cookies["deputy_browser"] = "another-browser-binding-value-xyz"
    elif case == "no-browser-cookie":
        poster = Browser(env)
    resp = poster.post("/login", data)
    assert resp.status_code == 403, (resp.status_code, resp.text[:300])
    assert not sets_session(resp)
    assert "/consent" not in resp.text
    assert login_required_for(env, poster)
    assert login_required_for(env, browser)
    # Control: the same form with the right token from the right browser works.
    ok = browser.post("/login", {"interaction": f.inputs["interaction"], "csrf": f.inputs["csrf"],
                                 "username": "bob", "password": PASSWORD})
    assert ok.status_code in (200, 303) and sets_session(ok), ok.status_code


@pytest.mark.parametrize("case", ["wrong-csrf", "other-browser", "no-session", "bad-decision"])
def test_oidc_consent_csrf_refused(env, browser, case):
    """RFC 6749 §10.12 / OWASP ASVS §4.2.2: POST /consent needs the CSRF token,
    the browser that started the interaction and the signed-in session (403
    otherwise; a decision other than allow/deny is 400); nothing is issued
    (no redirect with a code)."""
    r = start(browser, AuthRequest("web", WEB, scope="openid email", extra={"prompt": "consent"}))
    r = login(browser, r, "carol", PASSWORD)
    f = FormReader(r.text).form("/consent")
    data = {"interaction": f.inputs["interaction"], "csrf": f.inputs["csrf"], "decision": "allow"}
    poster = browser
    expected = 403
    if case == "wrong-csrf":
        data["csrf"] = "x" * len(data["csrf"])
    elif case == "other-browser":
        poster = Browser(env)
        poster.cookies["deputy_session"] = browser.cookies["deputy_session"]
        poster.cookies["deputy_browser"] = "another-browser-binding-value-xyz"
    elif case == "no-session":
        poster = Browser(env)
        poster.cookies["deputy_browser"] = browser.cookies["deputy_browser"]
    elif case == "bad-decision":
        data["decision"] = "maybe"
        expected = 400
    resp = poster.post("/consent", data)
    assert resp.status_code == expected, (resp.status_code, resp.text[:300])
    assert "Location" not in resp.headers
    # Control: the genuine form still completes (once).
    ok = consent(browser, r)
    q = assert_redirect_to(ok, WEB)
    assert q.get("code")


def test_oidc_consent_form_completes_once(env, browser):
    """RFC 6749 §10.5 (a code is issued once per authorization): submitting the
    same consent form twice gives one code, then 403."""
    r = start(browser, AuthRequest("web", WEB, scope="openid profile", extra={"prompt": "consent"}))
    r = login(browser, r, "dave", PASSWORD)
    first = consent(browser, r)
    assert assert_redirect_to(first, WEB).get("code")
    second = consent(browser, r)
    assert second.status_code == 403
    assert "Location" not in second.headers


# ------------------------------------------------------------ failed logins


def test_oidc_login_failure_message_is_generic_owasp(env, browser):
    """OWASP Authentication Cheat Sheet / ASVS §2.2: an unknown username and a
    wrong password get the same status (401), the same generic message and
    the same page; no session either way."""
    r = start(browser, AuthRequest("web", WEB))
    unknown = login(browser, r, "nobody-here", "some password")
    wrong = login(browser, unknown, "erin", "not erin's password")
    for resp in (unknown, wrong):
        assert resp.status_code == 401, resp.status_code
        assert GENERIC_LOGIN_ERROR in FormReader(resp.text).text
        assert not sets_session(resp)
        assert FormReader(resp.text).form("/login")
    assert normalized(unknown.text) == normalized(wrong.text)
    assert "nobody-here" not in unknown.text and "erin" not in wrong.text
    # The form still works afterwards.
    ok = login(browser, wrong, "erin", PASSWORD)
    assert ok.status_code == 200 and "/consent" in ok.text


def test_oidc_login_throttled_after_five_failures_rfc6585_s4(env, browser):
    """OWASP ASVS §2.2.1: after 5 failed logins for one account, further
    attempts - even with the right password - are refused with 429 and a
    Retry-After in seconds (RFC 6585 §4, RFC 9110 §10.2.3), no session;
    another account from the same address is not locked."""
    r = start(browser, AuthRequest("web", WEB))
    for i in range(5):
        r = login(browser, r, "frank", f"wrong password {i}")
        assert r.status_code == 401, (i, r.status_code)
    locked = login(browser, r, "frank", PASSWORD)
    assert locked.status_code == 429, locked.status_code
    retry = locked.headers.get("Retry-After", "")
    assert retry.isdigit() and int(retry) >= 1, retry
    assert not sets_session(locked)
    assert FormReader(locked.text).form("/login")
    # Account names differing only in case share the lock.
    locked2 = login(browser, locked, "FRANK", PASSWORD)
    assert locked2.status_code == 429
    # Another person at the same address can still sign in.
    other = Browser(env)
    q = sign_in_and_allow(other, AuthRequest("web", WEB), "alice")
    assert q["code"]
    other.close()


def test_oidc_throttled_logins_are_one_audit_event_per_burst(new_deputy):
    """OWASP ASVS §7.2 / §2.2.1 (log authentication failures without letting
    an attacker flood the log): once an account is locked, a burst of 30
    throttled attempts (429 each, one with the right password) writes no
    audit row per attempt; after the burst's quiet period (10 s) and the
    server's housekeeping (every 2 s), `deputy audit --event
    login_throttled` shows exactly one event for it: mode person, outcome
    refused, the person's id, the client, and detail {address,
    username_known: true, count: 30, first_at, last_at}, never the typed
    name or password. The five ordinary failures stay five login_failed
    events, none marked throttled."""
    d = new_deputy(NO_LOGIN_RATE_LIMIT)
    gina = add_user(d, "gina")
    add_app(d, "web", redirect_uris=[WEB])
    d.start()
    b = Browser(d)
    r = start(b, AuthRequest("web", WEB))
    for i in range(5):
        r = login(b, r, "gina", f"wrong password {i}")
        assert r.status_code == 401, (i, r.status_code)
    before = int(time.time())
    for i in range(30):
        r = login(b, r, "gina", PASSWORD if i == 15 else f"guess {i}")
        assert r.status_code == 429, (i, r.status_code)
    after = int(time.time())
    assert d.cli("audit", "--event", "login_throttled") == [], "nothing before the burst is over"
    deadline = time.monotonic() + 25
    events = []
    while time.monotonic() < deadline and not events:
        time.sleep(1)
        events = d.cli("audit", "--event", "login_throttled")
    assert len(events) == 1, events
    e = events[0]
    assert (e["event"], e["mode"], e["outcome"], e["person"], e["client_id"]) == \
        ("login_throttled", "person", "refused", gina["id"], "web"), e
    detail = e["detail"]
    assert detail["count"] == 30 and detail["username_known"] is True and detail["address"] == "127.0.0.1", detail
    assert before <= detail["first_at"] <= detail["last_at"] <= after, detail
    assert "gina" not in str(detail) and PASSWORD not in str(e) and "guess" not in str(e)
    failed = d.cli("audit", "--event", "login_failed")
    assert len(failed) == 5 and not any(f["detail"].get("throttled") for f in failed), failed
    time.sleep(2.5)
    assert len(d.cli("audit", "--event", "login_throttled")) == 1, "written once"
    b.close()

def test_oidc_login_posts_rate_limited_per_address_rfc6749_s10_10(new_deputy):
    """RFC 6749 §10.10 / RFC 6819 §5.1.4.2.3 (limit the rate of password
    attempts), RFC 6585 §4: with the per-address login limit set to 3 posts
    per second (DEPUTY_RATE_LIMIT_LOGIN=3), a burst of 5 posts within one
    second gets 429 for the 4th and 5th, with Retry-After and an HTML page
    carrying the security headers. The posts are aligned to the start of a
    second so the burst falls in one window."""
    d = new_deputy({"DEPUTY_RATE_LIMIT_LOGIN": "3"})
    add_user(d, "alice")
    add_app(d, "web", redirect_uris=[WEB])
    d.start()
    b = Browser(d)
    page = start(b, AuthRequest("web", WEB))
    f = FormReader(page.text).form("/login")
    data = {"interaction": f.inputs["interaction"], "csrf": "wrong", "username": "alice", "password": "x"}
    time.sleep(1.01 - (time.time() % 1))
    statuses = [b.post("/login", data) for _ in range(5)]
    codes = [r.status_code for r in statuses]
    assert codes == [403, 403, 403, 429, 429], codes
    limited = statuses[-1]
    assert limited.headers.get("Retry-After", "").isdigit(), limited.headers
    assert_html_security_headers(limited)
    b.close()
