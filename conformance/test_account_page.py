"""The person's account page (/account), black box.

In headless Chromium (the browser fixtures of test_oidc_e2e_browser.py): a
person opens /account, is sent through the login form and back; an agent
they signed in to exchanges their token for a second agent with a task; the
page lists the agent with its chain and task (a screenshot is kept in the
test's temp dir), it does not scroll sideways at 375 px; one click withdraws
the agent and introspection (RFC 7662 §2.2) of every token in that chain
answers {"active": false} at once (RFC 7009 §2.1 cascade semantics).

With requests: the page and its refusals carry the HTML security headers
(CSP frame-ancestors 'none', X-Frame-Options DENY: no framing, RFC 7034;
no-store); a form without this session's CSRF token, or from another origin
(Fetch Metadata / Origin), is 403 and changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Deputy
from flows import (AT_TYPE, INACTIVE, add_client, add_user, allow_delegation, exchange, introspect_json,
                   settings, sign_in)
from oidc_support import Browser, FormReader
# The browser fixtures (Debian's Chromium and chromedriver, installed on first use).
from test_oidc_e2e_browser import chromium, driver  # noqa: F401

PW = "correct horse battery staple"
NOTES = "https://notes.example"
AGENT, HELPER = "trip-agent", "booking-helper"
TASK = "book-flight-42"


@pytest.fixture(scope="module")
def env(module_dir):
    d = Deputy(module_dir / "account", settings())
    for u in ("alice", "bob"):
        add_user(d, u, PW)
    c = {
        AGENT: add_client(d, AGENT, kind="agent", auth="client_secret_post",
                          grants=("authorization_code", "refresh_token", "token-exchange")),
        HELPER: add_client(d, HELPER, kind="agent", auth="client_secret_post", grants=("token-exchange",),
                           redirect_uris=(), scopes=()),
    }
    allow_delegation(d, AGENT, HELPER, ["notes:read"], max_lifetime=600)
    allow_delegation(d, HELPER, NOTES, ["notes:read"], max_lifetime=300, max_depth=2)
    d.start()
    yield d, c
    d.stop()


def auth(c, client_id):
    return ("post", c[client_id]["client_secret"])


def delegate(d, c, user: str, task: str = TASK) -> dict[str, tuple[str, str]]:
    """`user` signs in to the agent; it exchanges for the helper with a
    task, the helper for the notes API. Every token, with its holder."""
    person = sign_in(d, AGENT, user, PW, "openid notes:read", client_auth=auth(c, AGENT))
    r1 = exchange(d, AGENT, auth(c, AGENT), person["access_token"], audience=HELPER, task=task)
    assert r1.status_code == 200, r1.text
    r2 = exchange(d, HELPER, auth(c, HELPER), r1.json()["access_token"], subject_token_type=AT_TYPE,
                  resource=NOTES)
    assert r2.status_code == 200, r2.text
    return {
        "access": (AGENT, person["access_token"]),
        "refresh": (AGENT, person["refresh_token"]),
        "hop1": (AGENT, r1.json()["access_token"]),
        "hop2": (HELPER, r2.json()["access_token"]),
    }


def active(d, c, holder: str, token: str) -> dict:
    return introspect_json(d, token, holder, auth(c, holder))


def browser_sign_in(d, user: str) -> Browser:
    """/account → 303 to the login form → POST /login → 303 back to /account."""
    b = Browser(d)
    r = b.get("/account")
    assert r.status_code == 303, r.text
    assert r.headers["Location"].startswith("/login?interaction="), r.headers
    form_page = b.get(r.headers["Location"])
    assert form_page.status_code == 200, form_page.text
    form = FormReader(form_page.text).form("/login")
    r = b.post("/login", {**form.inputs, "username": user, "password": PW})
    assert r.status_code == 303 and r.headers["Location"] == "/account", (r.status_code, r.headers)
    return b


def assert_no_framing(r):
    """RFC 7034 / CSP Level 3 frame-ancestors: never in a frame; never cached."""
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], r.headers
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"


def artifacts() -> Path:
    """Where the screenshots are kept after the run: $DEPUTY_ARTIFACTS, or
    target/artifacts/ in the repository (git-ignored with target/)."""
    where = Path(os.environ.get("DEPUTY_ARTIFACTS")
                 or Path(__file__).resolve().parent.parent / "target" / "artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_account_page_lists_an_agent_and_one_click_withdraws_its_chain(env, driver):
    """A person signs in through /account in Chromium, sees the agent, the
    chain of agents (you → trip-agent → booking-helper) and the task; clicking
    "Withdraw all access" ends every token of the chain at once: RFC 7662
    §2.2 introspection answers exactly {"active": false} for the access,
    refresh and both exchanged tokens."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    d, c = env
    shots = artifacts()
    wait = WebDriverWait(driver, 15)
    driver.get(d.url("/account"))
    wait.until(EC.visibility_of_element_located((By.ID, "username"))).send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PW)
    assert "your account" in driver.find_element(By.TAG_NAME, "h1").text
    driver.find_element(By.ID, "sign-in").click()
    wait.until(EC.presence_of_element_located((By.ID, "access")))
    assert driver.current_url == d.url("/account"), driver.current_url

    tokens = delegate(d, c, "alice")
    for name, (holder, token) in tokens.items():
        assert active(d, c, holder, token)["active"] is True, name
    driver.get(d.url("/account"))
    card = wait.until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, f'article[data-client-id="{AGENT}"]')))
    text = card.text
    assert AGENT in text and "You allowed" in text, text
    assert f"you → {AGENT}" in text and f"you → {AGENT} → {HELPER}" in text, text
    assert TASK in text, text
    helper = driver.find_element(By.CSS_SELECTOR, f'article[data-client-id="{HELPER}"]').text
    assert f"you → {AGENT} → {HELPER}" in helper and NOTES in helper, helper
    assert "Requests waiting for you" in driver.find_element(By.ID, "requests-waiting").text
    activity = driver.find_element(By.ID, "activity").text
    assert "Token for an agent acting for you" in activity and TASK in activity, activity
    driver.set_window_size(1000, 1500)
    assert driver.save_screenshot(str(shots / "account-page.png"))

    # A phone-width screen (375 CSS px): no sideways scrolling, even with a
    # task of 128 characters without a space (its "Stop the task" button too).
    tokens.update({f"long-{k}": v for k, v in delegate(d, c, "alice", task="x" * 128).items()})
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True})
    driver.refresh()
    wait.until(EC.presence_of_element_located((By.ID, "access")))
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] <= 375, widths
    assert driver.save_screenshot(str(shots / "account-page-phone.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    driver.find_element(By.CSS_SELECTOR, f'article[data-client-id="{AGENT}"] button.danger').click()
    notice = wait.until(EC.visibility_of_element_located((By.ID, "notice"))).text
    assert notice.startswith(f"Withdrew {AGENT}: your consent forgotten"), notice
    assert not driver.find_elements(By.CSS_SELECTOR, f'article[data-client-id="{AGENT}"]')
    for name, (holder, token) in tokens.items():
        assert active(d, c, holder, token) == INACTIVE, name
    assert driver.save_screenshot(str(shots / "account-page-withdrawn.png"))


def test_account_forms_refuse_missing_or_foreign_csrf_and_other_origins(env):
    """The page and its refusals are never framed (X-Frame-Options DENY, CSP
    frame-ancestors 'none'); a withdrawal without this session's CSRF token,
    with another session's, or posted from another origin (Origin /
    Sec-Fetch-Site) is 403 and every token stays active; the same form from
    the page's origin with its token works."""
    d, c = env
    tokens = delegate(d, c, "alice")
    alice = browser_sign_in(d, "alice")
    bob = browser_sign_in(d, "bob")
    page = alice.get("/account")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert_no_framing(page)
    assert "<script" not in page.text
    csrf = FormReader(page.text).form("/account/signout-everywhere").inputs["csrf"]
    bob_csrf = FormReader(bob.get("/account").text).form("/account/signout-everywhere").inputs["csrf"]
    assert csrf and bob_csrf and csrf != bob_csrf
    for data, headers in [
        ({"client_id": AGENT}, {}),
        ({"client_id": AGENT, "csrf": "forged"}, {}),
        ({"client_id": AGENT, "csrf": bob_csrf}, {}),
        ({"client_id": AGENT, "csrf": csrf}, {"Origin": "https://attacker.example"}),
        ({"client_id": AGENT, "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ]:
        for path in ("/account/withdraw", "/account/signout-everywhere"):
            r = alice.post(path, data, headers=headers)
            assert r.status_code == 403, (path, data, headers, r.status_code)
            assert_no_framing(r)
    for name, (holder, token) in tokens.items():
        assert active(d, c, holder, token)["active"] is True, name
    # Bob withdrawing alice's agent (he holds nothing there) changes nothing.
    r = bob.post("/account/withdraw", {"client_id": AGENT, "csrf": bob_csrf})
    assert r.status_code == 200 and "nothing to withdraw" in r.text, r.text
    assert active(d, c, *tokens["hop2"])["active"] is True
    # The task alone, from the page's own origin.
    r = alice.post("/account/withdraw", {"client_id": AGENT, "task": TASK, "csrf": csrf},
                   headers={"Origin": d.issuer, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200, r.text
    assert f"Stopped the task “{TASK}” of {AGENT}: 2 tokens revoked." in r.text, r.text
    assert active(d, c, *tokens["hop1"]) == INACTIVE
    assert active(d, c, *tokens["hop2"]) == INACTIVE
    assert active(d, c, *tokens["access"])["active"] is True
    # Sign out everywhere: the cookie is cleared and the refresh family ends.
    r = alice.post("/account/signout-everywhere", {"csrf": csrf})
    assert r.status_code == 200 and "Signed out everywhere" in r.text, r.text
    assert "deputy_session" not in alice.cookies
    assert active(d, c, *tokens["refresh"]) == INACTIVE
    assert active(d, c, *tokens["access"]) == INACTIVE
    assert alice.get("/account").status_code == 303
