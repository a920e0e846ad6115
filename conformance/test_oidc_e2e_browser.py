"""A person signs in with a real browser: headless Chromium (Debian's
chromium + chromium-driver, driven by selenium) opens deputy's authorization
URL, types into the login page, clicks #sign-in, clicks #allow on the consent
page, and lands on the client's redirect URI - a small local HTTP server that
records the callback. The code is then redeemed with requests.

Checks OIDC Core §3.1.2.1-§3.1.2.5 (authentication request -> login ->
consent -> successful authentication response with code and state), RFC 9207
§2 (iss in the response), RFC 6749 §4.1.3 (the code redeems once), OIDC Core
§3.1.3.7 (nonce in the ID token), RFC 6265bis §4.1.2.7 (cookies as the
browser stores them: HttpOnly, SameSite=Lax).

conformance/e2e/install_chromium.sh installs the browser with apt-get when
/usr/bin/chromium or /usr/bin/chromedriver is missing. Screenshots of the
login and consent pages are written to the test's temp dir.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from conftest import jwt_parts
from oidc_support import PASSWORD, AuthRequest, CallbackServer, add_app, add_user, query_of, redeem

E2E = Path(__file__).resolve().parent / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium and its driver, installed on first use."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        r = subprocess.run(["bash", str(E2E / "install_chromium.sh")], capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, f"install_chromium.sh failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def driver(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,760",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    service = Service(executable_path=chromium[1], log_output=str(tmp_path / "chromedriver.log"))
    drv = webdriver.Chrome(service=service, options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def test_oidc_e2e_browser_login_consent_code(new_deputy, driver, tmp_path):
    """OIDC Core §3.1.2.1-§3.1.2.5 / RFC 9207 §2 in a real browser: the login
    page renders with #username, #password, #sign-in; submitting it shows the
    consent page with #allow; clicking it lands the browser on the client's
    redirect URI with code, state and iss; RFC 6749 §4.1.3: the code redeems
    (with the PKCE verifier, OIDC Core §3.1.3.7 nonce in the ID token) once."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    d = new_deputy()
    user = add_user(d, "alice", email="a@x.example", name="Alice A")
    with CallbackServer() as client_site:
        redirect_uri = client_site.url("/cb")
        add_app(d, "browser-web", name="Notes Web", redirect_uris=[redirect_uri])
        d.start()
        req = AuthRequest("browser-web", redirect_uri, scope="openid profile email")
        wait = WebDriverWait(driver, 15)

        driver.get(d.url("/authorize") + "?" + urlencode(req.params()))
        username = wait.until(EC.visibility_of_element_located((By.ID, "username")))
        password = driver.find_element(By.ID, "password")
        sign_in = wait.until(EC.element_to_be_clickable((By.ID, "sign-in")))
        assert "Notes Web" in driver.find_element(By.TAG_NAME, "h1").text
        driver.save_screenshot(str(tmp_path / "login.png"))
        username.send_keys("alice")
        password.send_keys(PASSWORD)
        sign_in.click()

        allow = wait.until(EC.element_to_be_clickable((By.ID, "allow")))
        assert wait.until(EC.visibility_of_element_located((By.ID, "deny")))
        page = driver.find_element(By.TAG_NAME, "main").text
        assert "alice" in page and "See your email address" in page
        driver.save_screenshot(str(tmp_path / "consent.png"))
        # The browser holds the cookies as deputy set them (HttpOnly, Lax).
        jar = {c["name"]: c for c in driver.get_cookies()}
        assert jar["deputy_session"]["httpOnly"] is True and jar["deputy_session"]["sameSite"] == "Lax"
        assert jar["deputy_browser"]["httpOnly"] is True and jar["deputy_browser"]["sameSite"] == "Lax"
        allow.click()

        assert client_site.event.wait(15), f"the browser never reached the client; it is at {driver.current_url}"
        wait.until(EC.presence_of_element_located((By.ID, "client-callback")))
        assert driver.current_url.startswith(redirect_uri + "?"), driver.current_url
        hits = [h for h in client_site.hits if h.startswith("/cb")]
        assert len(hits) == 1, client_site.hits
        q = query_of(hits[0])
        assert set(q) == {"code", "state", "iss"}, q
        assert q["state"] == req.state
        assert q["iss"] == d.issuer

    t0 = time.time()
    r = redeem(d, req, q["code"])
    assert r.status_code == 200, r.text
    body = r.json()
    claims = jwt_parts(body["id_token"])[1]
    assert claims["sub"] == user["id"] and claims["nonce"] == req.nonce and claims["aud"] == "browser-web"
    assert claims["auth_time"] <= t0 + 1
    again = redeem(d, req, q["code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_oidc_e2e_browser_form_post_response_mode(new_deputy, driver):
    """OAuth 2.0 Form Post Response Mode §2 in a real browser: with
    response_mode=form_post the consent click leads to a page whose one
    script (the only way the form is sent: no button is clicked) (allowed by its hash in the CSP, form-action limited to the
    redirect URI's origin) makes Chromium POST code, state and iss to the
    redirect URI as application/x-www-form-urlencoded; nothing is in the URL;
    RFC 6749 §4.1.3: the code redeems."""
    from urllib.parse import parse_qs

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    d = new_deputy()
    add_user(d, "alice")
    with CallbackServer() as client_site:
        redirect_uri = client_site.url("/cb")
        add_app(d, "browser-fp", name="Form Post Web", redirect_uris=[redirect_uri])
        d.start()
        req = AuthRequest("browser-fp", redirect_uri, scope="openid", extra={"response_mode": "form_post"})
        wait = WebDriverWait(driver, 15)
        driver.get(d.url("/authorize") + "?" + urlencode(req.params()))
        wait.until(EC.visibility_of_element_located((By.ID, "username"))).send_keys("alice")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        wait.until(EC.element_to_be_clickable((By.ID, "sign-in"))).click()
        wait.until(EC.element_to_be_clickable((By.ID, "allow"))).click()

        assert client_site.event.wait(15), f"the browser never POSTed to the client; it is at {driver.current_url}"
        wait.until(EC.presence_of_element_located((By.ID, "client-callback")))
        assert driver.current_url == redirect_uri, driver.current_url
        assert [h for h in client_site.hits if h.startswith("/cb")] == [], client_site.hits
        assert len(client_site.posts) == 1, client_site.posts
        path, form = client_site.posts[0]
        assert path == "/cb"
        q = {k: v[0] for k, v in parse_qs(form, strict_parsing=True).items()}
        assert set(q) == {"code", "state", "iss"}, q
        assert q["state"] == req.state and q["iss"] == d.issuer

    r = redeem(d, req, q["code"])
    assert r.status_code == 200, r.text
