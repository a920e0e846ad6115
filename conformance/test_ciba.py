"""Asking the person first: OpenID CIBA Core 1.0, poll mode, black box.

An agent asks at POST /bc-authorize (CIBA Core §7), the person approves or
denies at the top of their account page (/account, signed in, with the
page's CSRF token), and the agent polls POST /token with
grant_type=urn:openid:params:grant-type:ciba (§10.1) for the answers of §11.
One deputy for the module, with a 1 s poll interval and an approval
webhook pointed at a recorder on loopback."""

import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from conftest import (ClientKey, Deputy, LoopbackServer, assert_oauth_error, assert_token_ok, assertion_form,
                      basic_auth, make_assertion)
from flows import add_client, add_user, authorize, post, redeem, settings, verify_jwcrypto

PW = "correct horse battery staple"
CIBA = "urn:openid:params:grant-type:ciba"
API = "https://api.example/"
JWT_AGENT_KEY = ClientKey("ES256", kid="ciba-1")


class Recorder(LoopbackServer):
    """Answers 204 to every POST and keeps the JSON bodies."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self._serve(Handler)

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.bodies)


@pytest.fixture(scope="module")
def env(module_dir):
    with Recorder() as hook:
        d = Deputy(module_dir / "ciba", settings(
            DEPUTY_CIBA_INTERVAL="1",
            DEPUTY_APPROVAL_WEBHOOK=hook.url("/notify"),
            DEPUTY_ALLOW_LOOPBACK_FETCH="true",
        ))
        add_user(d, "alice", PW)
        add_user(d, "bob", PW)
        agent = d.add_client("agent", "client_secret_basic", kind="agent", scopes=("notes:read",),
                             audiences=(API,), grants=("ciba", "refresh_token"))
        plain = d.add_client("plain", "client_secret_basic", kind="agent", scopes=("notes:read",),
                             audiences=(API,), grants=("client_credentials",))
        d.add_client("jwt-agent", "private_key_jwt", kind="agent", key=JWT_AGENT_KEY,
                     scopes=("notes:read",), audiences=(API,), grants=("ciba",))
        add_client(d, "web")
        d.start()
        yield d, {"agent": agent["client_secret"], "plain": plain["client_secret"]}, hook
        d.stop()


def ask(d, secret, client_id="agent", **over) -> requests.Response:
    data = {"scope": "openid notes:read", "login_hint": "alice", "task": "triage inbox",
            "binding_message": "BM-" + secrets.token_hex(3), "resource": API, **over}
    data = {k: v for k, v in data.items() if v is not None}
    return post(d, "/bc-authorize", client_id, secret, data)


def asked(d, secret, **over) -> tuple[str, str]:
    """CIBA Core §7.3: (auth_req_id, binding_message) of a successful request."""
    over.setdefault("binding_message", "BM-" + secrets.token_hex(3))
    r = ask(d, secret, **over)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"auth_req_id", "expires_in", "interval"}, body
    assert body["interval"] == 1
    assert r.headers.get("Cache-Control") == "no-store"
    return body["auth_req_id"], over["binding_message"]


def poll(d, secret, auth_req_id, client_id="agent") -> requests.Response:
    return post(d, "/token", client_id, secret, {"grant_type": CIBA, "auth_req_id": auth_req_id})


def signed_in(d, username="alice") -> requests.Session:
    s = requests.Session()
    authorize(d, "web", username, PW, "openid notes:read", session=s)
    return s


def decide_on_page(d, s: requests.Session, binding_message: str, decision: str) -> requests.Response:
    page = s.get(d.url("/account"), timeout=15)
    assert page.status_code == 200, page.text
    section = next(p for p in page.text.split("<article")[1:] if binding_message in p)
    action = re.search(r'action="(/account/requests/[^"]+)"', section).group(1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', section).group(1)
    return s.post(d.url(action), data={"csrf": csrf, "decision": decision}, timeout=15)


def test_discovery_advertises_poll_mode(env):
    """CIBA Core §4."""
    d, _, _ = env
    m = requests.get(d.url("/.well-known/openid-configuration"), timeout=15).json()
    assert m["backchannel_authentication_endpoint"] == d.url("/bc-authorize")
    assert m["backchannel_token_delivery_modes_supported"] == ["poll"]
    assert m["backchannel_user_code_parameter_supported"] is False
    assert CIBA in m["grant_types_supported"]


def test_pending_then_approved_on_the_page_then_tokens_once(env):
    """CIBA Core §7.3, §10.1, §11: pending, the person approves, tokens; the
    auth_req_id is redeemed once."""
    d, secrets_, _ = env
    rid, bm = asked(d, secrets_["agent"])
    assert_oauth_error(poll(d, secrets_["agent"], rid), 400, "authorization_pending")
    s = signed_in(d)
    page = s.get(d.url("/account"), timeout=15)
    # CIBA: the requests are at the top of the person's account page.
    assert page.text.index("Requests waiting for you") < page.text.index("Apps and agents that can act for you")
    for shown in (bm, "triage inbox", API, "openid notes:read", "agent"):
        assert shown in page.text, shown
    assert rid not in page.text
    # Without the page's CSRF token nothing is decided.
    handle = re.search(r'action="(/account/requests/[^"]+)"', page.text).group(1)
    r = s.post(d.url(handle), data={"csrf": "forged", "decision": "approve"}, timeout=15)
    assert r.status_code == 403
    assert decide_on_page(d, s, bm, "approve").status_code == 200
    tokens = assert_token_ok(poll(d, secrets_["agent"], rid))
    _, at = verify_jwcrypto(d, tokens["access_token"])
    assert at["aud"] == API and at["task"] == "triage inbox" and at["client_id"] == "agent"
    assert at["scope"] == "openid notes:read"
    _, idt = verify_jwcrypto(d, tokens["id_token"], typ="JWT")
    assert idt["aud"] == "agent" and idt["sub"] == at["sub"]
    assert isinstance(tokens.get("refresh_token"), str)
    assert_oauth_error(poll(d, secrets_["agent"], rid), 400, "invalid_grant")


def test_denied_is_access_denied(env):
    """CIBA Core §11: access_denied once the person denies."""
    d, secrets_, _ = env
    rid, bm = asked(d, secrets_["agent"])
    assert decide_on_page(d, signed_in(d), bm, "deny").status_code == 200
    assert_oauth_error(poll(d, secrets_["agent"], rid), 400, "access_denied")


def test_polling_too_fast_is_slow_down(env):
    """CIBA Core §11: slow_down when polled faster than the interval."""
    d, secrets_, _ = env
    rid, _ = asked(d, secrets_["agent"])
    # deputy's clock counts whole seconds and the interval is 1 s: of three
    # polls within a second, two fall in the same second.
    codes = [poll(d, secrets_["agent"], rid).json()["error"] for _ in range(3)]
    assert codes[0] == "authorization_pending", codes
    assert "slow_down" in codes and set(codes) <= {"authorization_pending", "slow_down"}, codes
    # The interval is now 6 s: the next poll is too soon as well.
    assert_oauth_error(poll(d, secrets_["agent"], rid), 400, "slow_down")


def test_twenty_concurrent_polls_after_approval_redeem_once(env):
    """CIBA Core §11: of 20 concurrent polls exactly one gets tokens."""
    d, secrets_, _ = env
    rid, bm = asked(d, secrets_["agent"])
    assert decide_on_page(d, signed_in(d), bm, "approve").status_code == 200
    results: list[requests.Response] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def one():
        start.wait()
        r = poll(d, secrets_["agent"], rid)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200] + [400] * 19, [r.text for r in results]
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400)


def test_only_the_person_named_decides(env):
    d, secrets_, _ = env
    rid, bm = asked(d, secrets_["agent"])
    page = signed_in(d, "bob").get(d.url("/account"), timeout=15)
    assert page.status_code == 200, page.text
    assert bm not in page.text
    assert_oauth_error(poll(d, secrets_["agent"], rid), 400, "authorization_pending")


def test_refusals_of_the_authentication_request(env):
    """CIBA Core §13."""
    d, secrets_, _ = env
    assert_oauth_error(ask(d, secrets_["agent"], binding_message="x" * 65), 400, "invalid_binding_message")
    assert_oauth_error(ask(d, secrets_["agent"], scope="notes:read"), 400, "invalid_scope")
    assert_oauth_error(ask(d, secrets_["agent"], id_token_hint="a.b.c"), 400, "invalid_request")
    assert_oauth_error(ask(d, secrets_["agent"], login_hint=None), 400, "invalid_request")
    assert_oauth_error(ask(d, secrets_["agent"], resource="https://evil.example/"), 400, "invalid_target")
    for bad in ("0", "-5", "soon", "1.5"):  # §7.1: a positive integer
        assert_oauth_error(ask(d, secrets_["agent"], requested_expiry=bad), 400, "invalid_request")
    assert_oauth_error(ask(d, secrets_["plain"], client_id="plain"), 400, "unauthorized_client")
    assert_oauth_error(ask(d, None, client_id="web"), 401, "invalid_client")
    r = requests.post(d.url("/bc-authorize"), data={"scope": "openid", "login_hint": "alice"},
                      headers=basic_auth("agent", "wrong"), timeout=15)
    assert_oauth_error(r, 401, "invalid_client")


def test_id_token_hint_must_have_been_issued_to_the_asking_client(env):
    """CIBA Core §7.1: `id_token_hint` is "an ID Token previously issued to
    the Client". An ID token deputy issued to another client (here the web
    app's, for the same person) is refused; the agent's own works."""
    d, secrets_, _ = env
    code, verifier = authorize(d, "web", "alice", PW, "openid notes:read")
    web_id_token = redeem(d, "web", code, verifier).json()["id_token"]
    assert_oauth_error(ask(d, secrets_["agent"], login_hint=None, id_token_hint=web_id_token),
                       400, "invalid_request")
    rid, bm = asked(d, secrets_["agent"])
    assert decide_on_page(d, signed_in(d), bm, "approve").status_code == 200
    own_id_token = assert_token_ok(poll(d, secrets_["agent"], rid))["id_token"]
    rid2, bm2 = asked(d, secrets_["agent"], login_hint=None, id_token_hint=own_id_token)
    page = signed_in(d).get(d.url("/account"), timeout=15)
    assert bm2 in page.text, "the request reaches the person the hint names"


def test_another_clients_or_unknown_auth_req_id_is_invalid_grant(env):
    """CIBA Core §11: invalid_grant for an auth_req_id not this client's."""
    d, secrets_, _ = env
    rid, _ = asked(d, secrets_["agent"])
    assert_oauth_error(poll(d, secrets_["plain"], rid, client_id="plain"), 400, "unauthorized_client")
    assert_oauth_error(poll(d, secrets_["agent"], "nope"), 400, "invalid_grant")


def test_the_webhook_tells_without_secrets(env):
    """deputy's approval webhook: who, which client, which task, the binding
    message and the page; never the auth_req_id or a token."""
    d, secrets_, hook = env
    rid, bm = asked(d, secrets_["agent"])
    deadline = time.time() + 10
    while time.time() < deadline and not any(b.get("binding_message") == bm for b in hook.received()):
        time.sleep(0.1)
    body = next(b for b in hook.received() if b.get("binding_message") == bm)
    assert body == {"person": "alice", "client_id": "agent", "client_name": "agent",
                    "task": "triage inbox", "binding_message": bm,
                    "account_url": d.url("/account")}
    assert rid not in json.dumps(hook.received())


def test_unknown_person_same_answer_then_expiry(env):
    """CIBA Core §7.3, §11: an unknown login_hint gets the same answer shape
    and the request expires; a request nobody decides expires too (10 s,
    the shortest requested_expiry deputy accepts)."""
    d, secrets_, hook = env
    before = len(hook.received())
    unknown, _ = asked(d, secrets_["agent"], login_hint="nobody-" + secrets.token_hex(3), requested_expiry="10")
    known, _ = asked(d, secrets_["agent"], requested_expiry="10")
    assert_oauth_error(poll(d, secrets_["agent"], unknown), 400, "authorization_pending")
    time.sleep(10.5)
    assert_oauth_error(poll(d, secrets_["agent"], unknown), 400, "expired_token")
    assert_oauth_error(poll(d, secrets_["agent"], known), 400, "expired_token")
    assert len(hook.received()) <= before + 1, "nobody to notify for an unknown person"


def jwt_form(assertion: str, params: dict) -> dict:
    form = assertion_form(assertion, **params)
    del form["grant_type"]
    return form


def test_private_key_jwt_audiences_at_the_backchannel_endpoint(env):
    """CIBA Core §7.1: a client authenticating with a JWT at /bc-authorize
    may name the issuer, the token endpoint or the backchannel authentication
    endpoint as audience (the OP MUST accept all three); another audience is
    401 invalid_client (RFC 7523 §3 item 3)."""
    d, _, _ = env
    ask_with = {"scope": "openid notes:read", "login_hint": "alice", "resource": API}
    for aud in (d.issuer, d.url("/token"), d.url("/bc-authorize")):
        a = make_assertion(JWT_AGENT_KEY, "jwt-agent", aud)
        r = requests.post(d.url("/bc-authorize"), data=jwt_form(a, ask_with), timeout=15)
        assert r.status_code == 200, (aud, r.text)
        assert set(r.json()) == {"auth_req_id", "expires_in", "interval"}
    a = make_assertion(JWT_AGENT_KEY, "jwt-agent", d.url("/introspect"))
    r = requests.post(d.url("/bc-authorize"), data=jwt_form(a, ask_with), timeout=15)
    assert_oauth_error(r, 401, "invalid_client")


def test_requested_expiry_is_kept_within_deputys_bounds(env):
    """CIBA Core §7.1: the server MAY use requested_expiry to influence the
    lifetime; deputy keeps it within 10-1800 s and says so in expires_in."""
    d, secrets_, _ = env
    for asked, got in (("120", 120), ("3600", 1800), ("5", 10)):
        r = ask(d, secrets_["agent"], requested_expiry=asked)
        assert r.status_code == 200, r.text
        assert r.json()["expires_in"] == got, (asked, r.json())
