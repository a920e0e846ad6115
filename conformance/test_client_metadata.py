"""OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-
document, "CIMD"; MCP authorization 2025-11-25 §"Client ID Metadata
Documents"): a `client_id` that is an https URL names a client whose metadata
deputy fetches from that URL.

The documents are served over https on 127.0.0.1 under the name `localhost`
with a certificate from a test CA that deputy trusts through
`SSL_CERT_FILE`; `DEPUTY_ALLOW_LOOPBACK_FETCH=true` lets deputy fetch from a
loopback address at all. A bad document is never a redirect back to the
client (RFC 6749 §4.1.2.1: the client cannot be trusted, so the person gets
an error page) and the document server's request log shows what was fetched.
"""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests

from cimd_support import (DOC_LIMIT, FETCH_DEADLINE, LOOPBACK_FETCH, MCP_SCOPE, MCP_SCOPE_TEXT, DocServer, Route,
                          add_mcp_resource, client_document, make_tls_files, start_trusting)
from conftest import (ClientKey, Deputy, JWT_BEARER, assert_oauth_error, assert_token_ok, free_port, jwt_parts,
                      make_assertion)
from oidc_support import (NO_LOGIN_RATE_LIMIT, PASSWORD, AuthRequest, Browser, FormReader, add_user,
                          assert_error_page, assert_redirect_to, consent, login, redeem, sign_in_and_allow, start)

RESOURCE = "https://mcp.example/"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(scope="module")
def env(module_dir):
    """One deputy with the loopback development setting, trusting the test
    CA; a person; a resource with the scope `mcp:tools`; the document server."""
    ca, cert, key = make_tls_files(module_dir / "tls")
    srv = DocServer(cert, key)
    d = Deputy(module_dir / "deputy", {**LOOPBACK_FETCH, **NO_LOGIN_RATE_LIMIT})
    user = add_user(d, "alice")
    add_mcp_resource(d, RESOURCE)
    with srv:
        start_trusting(d, ca)
        yield SimpleNamespace(d=d, srv=srv, ca=ca, user=user)
        d.stop()


def new_doc(srv: DocServer, redirect_uris=("http://127.0.0.1/callback",), path: str | None = None, **extra) -> str:
    """Serve a fresh, valid document at a path of its own; its URL (the client_id)."""
    path = path or f"/clients/{uuid.uuid4().hex[:10]}.json"
    url = srv.url(path)
    srv.put_json(path, client_document(url, list(redirect_uris), **extra))
    return url


def mcp_request(client_id: str, redirect_uri: str, **extra) -> AuthRequest:
    """An MCP-style request: RFC 8707 resource, the resource's scope, PKCE S256."""
    return AuthRequest(client_id, redirect_uri, scope=f"openid {MCP_SCOPE}", extra={"resource": RESOURCE, **extra})


def path_of(url: str) -> str:
    p = urlsplit(url)
    return p.path + (f"?{p.query}" if p.query else "")


def assert_login_page(resp: requests.Response):
    """The request was accepted: deputy asks the person to sign in."""
    assert resp.status_code == 200, f"expected the login page, got {resp.status_code}: {resp.text[:400]}"
    FormReader(resp.text).form("/login")


def error_text(resp: requests.Response) -> str:
    return FormReader(resp.text).text


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


@pytest.mark.parametrize("doc", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
def test_discovery_advertises_client_id_metadata_documents(env, doc):
    """CIMD §4 (client_id_metadata_document_supported, RFC 8414 §2 extension);
    MCP 2025-11-25: clients look for this flag before using a URL client_id.
    Public clients need `none` in token_endpoint_auth_methods_supported."""
    m = env.d.get(doc).json()
    assert m["client_id_metadata_document_supported"] is True, m
    assert "none" in m["token_endpoint_auth_methods_supported"], m
    assert "S256" in m["code_challenge_methods_supported"]


# --------------------------------------------------------------------------
# The happy path
# --------------------------------------------------------------------------


def test_document_client_signs_in_with_loopback_redirect_on_any_port(env):
    """CIMD §3 / §5: the document is fetched, its client_id equals the URL,
    the redirect URI is one it lists; RFC 8252 §7.3: a loopback redirect
    URI may use any port. CIMD §6 (consent): the page shows the client's
    self-asserted name, its client_uri, the host it redirects to, and says
    the client described itself. Its logo_uri is deliberately not loaded
    (deputy's decision, README: a self-described client's logo would lend a
    brand's look to an impersonation and tell the document's author who
    looks at the page). The code is redeemed by the public
    client (client_id = the URL, PKCE), the access token is for the resource
    (RFC 8707 §2, RFC 9068 §2.2), and the refresh token rotates (RFC 6749 §6)."""
    d, srv = env.d, env.srv
    client_id = new_doc(srv)
    path = path_of(client_id)
    b = Browser(d)
    req = mcp_request(client_id, f"http://127.0.0.1:{free_port()}/callback")
    page = start(b, req)
    assert_login_page(page)
    assert srv.count(path) == 1, srv.requests
    page = login(b, page, "alice", PASSWORD)
    assert page.status_code == 200, page.text[:400]
    FormReader(page.text).form("/consent")
    text = FormReader(page.text).text
    assert "Notes Agent" in text, text
    assert "127.0.0.1" in text, f"the redirect host is not shown: {text}"
    assert "describ" in text.lower(), f"the page does not say the client described itself: {text}"
    assert MCP_SCOPE_TEXT in text and RESOURCE in text, text
    assert "https://notes-agent.example/" in page.text, "client_uri not shown"
    assert "logo.png" not in page.text, "the self-described client's logo is not loaded"
    q = assert_redirect_to(consent(b, page), req.redirect_uri)
    assert q["iss"] == d.issuer and q["state"] == req.state and q["code"]

    tok = assert_token_ok(redeem(d, req, q["code"], resource=RESOURCE))
    header, claims = jwt_parts(tok["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["client_id"] == client_id
    assert claims["sub"] == env.user["id"]
    assert claims["aud"] in (RESOURCE, [RESOURCE]), claims
    assert claims["iss"] == d.issuer
    assert set(claims["scope"].split()) == {"openid", MCP_SCOPE}, claims
    assert isinstance(tok.get("refresh_token"), str)
    assert "id_token" in tok

    r = requests.post(d.token_endpoint, data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                              "client_id": client_id, "resource": RESOURCE}, timeout=15)
    fresh = assert_token_ok(r)
    assert fresh["refresh_token"] != tok["refresh_token"]
    assert fresh["access_token"] != tok["access_token"]
    c2 = jwt_parts(fresh["access_token"])[1]
    assert c2["client_id"] == client_id and c2["sub"] == env.user["id"] and c2["aud"] in (RESOURCE, [RESOURCE])

    # The client is known to the operator: kind agent, registered by its document.
    listed = [c for c in d.cli("client", "list") if (c.get("id") or c.get("client_id")) == client_id]
    assert len(listed) == 1, d.cli("client", "list")
    assert listed[0]["registration"] == "metadata_document", listed[0]
    assert listed[0]["kind"] == "agent", listed[0]


def test_localhost_redirect_any_port_but_same_path(env):
    """RFC 8252 §7.3 / §8.3: `http://localhost` registered, any port at the
    request (the port is the only part allowed to vary); another path or
    host is refused with an error page (RFC 6749 §3.1.2.4), never a redirect."""
    d, srv = env.d, env.srv
    client_id = new_doc(srv, redirect_uris=["http://localhost:3000/callback"])
    assert_login_page(start(Browser(d), mcp_request(client_id, f"http://localhost:{free_port()}/callback")))
    for bad in (f"http://localhost:{free_port()}/other", f"http://127.0.0.2:{free_port()}/callback",
                "https://localhost:3000/callback", "http://localhost:3000/callback/x"):
        assert_error_page(start(Browser(d), mcp_request(client_id, bad)))


def test_consent_page_escapes_the_self_asserted_name(env):
    """CIMD §6 (the name is chosen by whoever controls the URL); OWASP XSS:
    the client_name is shown as text, never as markup."""
    d, srv = env.d, env.srv
    name = 'Helper <img src=x onerror="alert(1)"> & co'
    client_id = new_doc(srv, client_name=name)
    b = Browser(d)
    page = login(b, start(b, mcp_request(client_id, "http://127.0.0.1:8123/callback")), "alice", PASSWORD)
    assert page.status_code == 200, page.text[:300]
    assert "<img src=x" not in page.text
    assert name in FormReader(page.text).text


def test_tolerated_extra_metadata(env):
    """CIMD §3 / RFC 7591 §2: unknown fields are ignored; grant types deputy
    does not offer (device_code, RFC 8628; jwt-bearer, RFC 7523) and a
    `token_endpoint_auth_methods_supported` array do not make the document
    invalid. Only authorization_code and refresh_token are granted: at /token
    jwt-bearer is unsupported_grant_type and client_credentials, for a public
    client, unauthorized_client (RFC 6749 §5.2)."""
    d, srv = env.d, env.srv
    client_id = new_doc(
        srv,
        grant_types=["authorization_code", "refresh_token", DEVICE_CODE, JWT_BEARER_GRANT],
        token_endpoint_auth_methods_supported=["none", "private_key_jwt"],
        software_id="7d2e5cbe-cimd-test",
        software_version="1.2.3",
        contacts=["ops@notes-agent.example"],
        tos_uri="https://notes-agent.example/tos",
        x_vendor_extension={"nested": [1, 2, {"deep": True}]},
    )
    req = mcp_request(client_id, "http://127.0.0.1:61000/callback")
    q = sign_in_and_allow(Browser(d), req, "alice")
    assert_token_ok(redeem(d, req, q["code"], resource=RESOURCE))
    r = requests.post(d.token_endpoint, data={"grant_type": "client_credentials", "client_id": client_id}, timeout=15)
    assert_oauth_error(r, 400, "unauthorized_client")
    r = requests.post(d.token_endpoint, data={"grant_type": JWT_BEARER_GRANT, "client_id": client_id,
                                              "assertion": "e30.e30.sig"}, timeout=15)
    assert_oauth_error(r, 400, "unsupported_grant_type")


def test_private_key_jwt_document_client(env):
    """CIMD §3 (token_endpoint_auth_method private_key_jwt with `jwks`,
    RFC 7591 §2): the code is redeemed only with a client assertion signed by
    a key of the document (RFC 7523 §2.2, §3: iss = sub = the client_id URL);
    without one the client is not authenticated (401 invalid_client)."""
    d, srv = env.d, env.srv
    key = ClientKey("ES256")
    client_id = new_doc(srv, token_endpoint_auth_method="private_key_jwt", jwks=key.jwks())
    req = mcp_request(client_id, "http://127.0.0.1:61001/callback")
    q = sign_in_and_allow(Browser(d), req, "alice")
    assert_oauth_error(redeem(d, req, q["code"], resource=RESOURCE), 401, "invalid_client")
    q = sign_in_and_allow(Browser(d), req, "alice")
    wrong = make_assertion(ClientKey("ES256", kid=key.kid), client_id, d.issuer)
    assert_oauth_error(redeem(d, req, q["code"], resource=RESOURCE, client_assertion_type=JWT_BEARER,
                              client_assertion=wrong), 401, "invalid_client")
    q = sign_in_and_allow(Browser(d), req, "alice")
    good = make_assertion(key, client_id, d.issuer)
    tok = assert_token_ok(redeem(d, req, q["code"], resource=RESOURCE, client_id=None,
                                 client_assertion_type=JWT_BEARER, client_assertion=good))
    assert jwt_parts(tok["access_token"])[1]["client_id"] == client_id


def test_unregistered_resource_and_scope_go_back_to_the_client(env):
    """RFC 8707 §2 / RFC 6749 §4.1.2.1: once the document is valid, a
    resource deputy does not know is invalid_target and a scope no resource
    defines is invalid_scope, sent back to the redirect URI."""
    d, srv = env.d, env.srv
    client_id = new_doc(srv)
    redirect = "http://127.0.0.1:61002/callback"
    req = AuthRequest(client_id, redirect, scope="openid", extra={"resource": "https://other.example/"})
    q = assert_redirect_to(start(Browser(d), req), redirect)
    assert q["error"] == "invalid_target", q
    req = AuthRequest(client_id, redirect, scope="openid admin:everything", extra={"resource": RESOURCE})
    q = assert_redirect_to(start(Browser(d), req), redirect)
    assert q["error"] == "invalid_scope", q


# --------------------------------------------------------------------------
# Bad documents: an error page, never a redirect
# --------------------------------------------------------------------------


BAD_DOCUMENTS = {
    # CIMD §4.1: the document's client_id MUST equal the URL it was fetched from.
    "client_id_differs": lambda url, cb: Route(body=json.dumps(client_document(url + "x", [cb])).encode()),
    # CIMD §5 / RFC 6749 §3.1.2.3: the redirect URI must be one the document lists.
    "redirect_not_listed": lambda url, cb: Route(body=json.dumps(
        client_document(url, ["http://127.0.0.1/elsewhere", "https://notes-agent.example/cb"])).encode()),
    # CIMD §4: not a JSON object.
    "not_json": lambda url, cb: Route(body=b"<!doctype html><title>hello</title>", content_type="text/html"),
    "json_array": lambda url, cb: Route(body=json.dumps([client_document(url, [cb])]).encode()),
    # CIMD §4: the document could not be retrieved.
    "not_found": lambda url, cb: Route(status=404, body=b'{"error":"gone"}'),
    # CIMD §4 / deputy's fetcher: at most 5 KB.
    "too_large": lambda url, cb: Route(body=padded(client_document(url, [cb]), DOC_LIMIT + 1)),
    # RFC 7591 §5 / CIMD §8: a redirect URI with a dangerous scheme.
    "javascript_redirect": lambda url, cb: Route(body=json.dumps(
        client_document(url, ["javascript:alert(document.domain)//"])).encode()),
    # CIMD §4: a client_id naming a public client must not claim a secret method.
    "client_secret_method": lambda url, cb: Route(body=json.dumps(
        client_document(url, [cb], token_endpoint_auth_method="client_secret_basic")).encode()),
}


def padded(doc: dict, size: int) -> bytes:
    """`doc` as JSON of exactly `size` bytes (an unknown field takes the slack)."""
    doc = dict(doc, x_padding="")
    base = len(json.dumps(doc).encode())
    doc["x_padding"] = "p" * (size - base)
    body = json.dumps(doc).encode()
    assert len(body) == size, (len(body), size)
    return body


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_document_is_an_error_page(env, case):
    """A document deputy cannot trust ends the request with an HTML error
    page (400), no redirect to any URI in it (RFC 6749 §4.1.2.1, CIMD §4.1,
    §5, §8); nothing is issued."""
    d, srv = env.d, env.srv
    path = f"/bad/{case}/{uuid.uuid4().hex[:8]}.json"
    url = srv.url(path)
    cb = "http://127.0.0.1/callback"
    srv.put(path, BAD_DOCUMENTS[case](url, cb))
    redirect = "javascript:alert(document.domain)//" if case == "javascript_redirect" else "http://127.0.0.1:61003/callback"
    r = start(Browser(d), mcp_request(url, redirect))
    assert_error_page(r, 400)
    assert srv.count(path) >= 1, "the document was not fetched at all"


def test_document_of_exactly_the_limit_is_accepted(env):
    """The 5 KB limit is inclusive: a valid document of 5120 bytes is used
    (the 5121-byte one is refused above)."""
    d, srv = env.d, env.srv
    path = f"/limit/{uuid.uuid4().hex[:8]}.json"
    url = srv.url(path)
    srv.put(path, Route(body=padded(client_document(url, ["http://127.0.0.1/callback"]), DOC_LIMIT)))
    assert_login_page(start(Browser(d), mcp_request(url, "http://127.0.0.1:61004/callback")))


def test_redirecting_document_url_is_not_followed(env):
    """CIMD §4 / deputy's fetcher: a 3xx answer is not followed (the document
    must come from the URL that is the client_id); error page, and the
    redirect's target is never requested."""
    d, srv = env.d, env.srv
    target = new_doc(srv)
    path = f"/moved/{uuid.uuid4().hex[:8]}.json"
    url = srv.put(path, Route(status=302, headers={"Location": target}))
    # The target's document names the redirecting URL, so only following would make it valid.
    srv.put_json(path_of(target), client_document(url, ["http://127.0.0.1/callback"]))
    r = start(Browser(d), mcp_request(url, "http://127.0.0.1:61005/callback"))
    assert_error_page(r, 400)
    assert srv.count(path) == 1
    assert srv.count(path_of(target)) == 0, "the redirect was followed"


def test_slow_document_is_cut_at_the_deadline(env):
    """deputy's fetcher: 5 s for the whole fetch; a server that answers after
    7 s gets an error page (400) soon after the deadline, not after 7 s."""
    d, srv = env.d, env.srv
    path = f"/slow/{uuid.uuid4().hex[:8]}.json"
    url = srv.url(path)
    srv.put(path, Route(body=json.dumps(client_document(url, ["http://127.0.0.1/callback"])).encode(), delay=7.0))
    t0 = time.monotonic()
    r = start(Browser(d), mcp_request(url, "http://127.0.0.1:61006/callback"))
    took = time.monotonic() - t0
    assert_error_page(r, 400)
    assert srv.count(path) == 1
    assert FETCH_DEADLINE - 0.5 <= took < FETCH_DEADLINE + 1.5, f"answered after {took:.1f}s"


# --------------------------------------------------------------------------
# URLs that are not a client_id URL, and addresses never fetched
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["query", "fragment", "userinfo", "dot_segment", "http_scheme"])
def test_url_shapes_that_are_not_a_client_id(env, shape):
    """CIMD §3: a client identifier URL MUST use https, MUST have a path, MUST
    NOT contain single- or double-dot path segments, a fragment or
    userinfo, and SHOULD NOT contain a query. Such a client_id is an error
    page and nothing is fetched (here a valid document waits at each URL's
    path, naming exactly that URL)."""
    d, srv = env.d, env.srv
    tag = uuid.uuid4().hex[:8]
    base = f"localhost:{srv.port}"
    url, served_at = {
        "query": (f"https://{base}/q/{tag}.json?v=1", f"/q/{tag}.json?v=1"),
        "fragment": (f"https://{base}/f/{tag}.json#frag", f"/f/{tag}.json"),
        "userinfo": (f"https://user:pw@{base}/u/{tag}.json", f"/u/{tag}.json"),
        "dot_segment": (f"https://{base}/d/x/../{tag}.json", f"/d/x/../{tag}.json"),
        "http_scheme": (f"http://notes-agent.example/h/{tag}.json", None),
    }[shape]
    if served_at:
        srv.put_json(served_at, client_document(url, ["http://127.0.0.1/callback"]))
    before = len(srv.requests)
    r = start(Browser(d), mcp_request(url, "http://127.0.0.1:61007/callback"))
    assert_error_page(r, 400)
    assert len(srv.requests) == before, f"fetched for a {shape} client_id: {srv.requests[before:]}"


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.10", "172.16.0.5", "169.254.169.254", "100.64.0.1",
                                  "0.0.0.0", "[fd00::1]", "[fe80::1]", "[::ffff:10.0.0.1]"])
def test_private_address_is_never_fetched(env, host):
    """CIMD §8 (SSRF): deputy does not fetch from private, link-local,
    shared or unspecified addresses, even with loopback fetching allowed; it
    refuses at once (no connection attempt running into the deadline)."""
    d = env.d
    url = f"https://{host}/clients/agent.json"
    t0 = time.monotonic()
    r = start(Browser(d), mcp_request(url, "http://127.0.0.1:61008/callback"))
    took = time.monotonic() - t0
    assert_error_page(r, 400)
    assert took < FETCH_DEADLINE - 1, f"took {took:.1f}s: a connection was attempted"


def test_loopback_document_needs_the_development_setting(new_deputy, tmp_path):
    """CIMD §8: without DEPUTY_ALLOW_LOOPBACK_FETCH a document on a loopback
    address (by name or literal) is never fetched: error page, no request."""
    ca, cert, key = make_tls_files(tmp_path / "tls")
    d = new_deputy(NO_LOGIN_RATE_LIMIT)
    add_mcp_resource(d, RESOURCE)
    with DocServer(cert, key) as srv:
        start_trusting(d, ca)
        for host in ("localhost", "127.0.0.1", "127.0.0.2", "[::1]"):
            path = f"/lb/{uuid.uuid4().hex[:8]}.json"
            url = srv.url(path, host=host)
            srv.put_json(path, client_document(url, ["http://127.0.0.1/callback"]))
            assert_error_page(start(Browser(d), mcp_request(url, "http://127.0.0.1:61009/callback")), 400)
        assert srv.requests == [], srv.requests


# --------------------------------------------------------------------------
# Operator settings
# --------------------------------------------------------------------------


def test_metadata_documents_off_means_unknown_client(new_deputy, tmp_path):
    """DEPUTY_CLIENT_METADATA_DOCUMENTS=off: a URL client_id is just an
    unknown client (RFC 6749 §4.1.2.1 error page, the same as for any
    unknown id), nothing is fetched, and discovery does not advertise CIMD."""
    ca, cert, key = make_tls_files(tmp_path / "tls")
    d = new_deputy({**LOOPBACK_FETCH, "DEPUTY_CLIENT_METADATA_DOCUMENTS": "off"})
    add_mcp_resource(d, RESOURCE)
    with DocServer(cert, key) as srv:
        start_trusting(d, ca)
        url = new_doc(srv)
        r = start(Browser(d), mcp_request(url, "http://127.0.0.1:61010/callback"))
        assert_error_page(r, 400)
        unknown = start(Browser(d), mcp_request("no-such-client", "http://127.0.0.1:61010/callback"))
        assert_error_page(unknown, 400)
        assert error_text(r) == error_text(unknown)
        assert srv.requests == []
    for doc in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        assert d.get(doc).json().get("client_id_metadata_document_supported") is not True


def test_allow_list_by_prefix_and_by_host(new_deputy, tmp_path):
    """DEPUTY_CLIENT_METADATA_ALLOW (CIMD §8: servers may restrict which
    URLs they accept): with URL prefixes, a document outside every prefix
    is refused unfetched; with a host name, that host's documents are used."""
    ca, cert, key = make_tls_files(tmp_path / "tls")
    with DocServer(cert, key) as srv:
        allowed_prefix = srv.url("/allowed/")
        d = new_deputy({**LOOPBACK_FETCH, "DEPUTY_CLIENT_METADATA_ALLOW": f"{allowed_prefix},tools.example.org"})
        add_mcp_resource(d, RESOURCE)
        start_trusting(d, ca)
        inside = new_doc(srv, path=f"/allowed/{uuid.uuid4().hex[:8]}.json")
        outside = new_doc(srv, path=f"/elsewhere/{uuid.uuid4().hex[:8]}.json")
        assert_login_page(start(Browser(d), mcp_request(inside, "http://127.0.0.1:61011/callback")))
        assert_error_page(start(Browser(d), mcp_request(outside, "http://127.0.0.1:61011/callback")), 400)
        assert srv.count(path_of(outside)) == 0

        d2 = new_deputy({**LOOPBACK_FETCH, "DEPUTY_CLIENT_METADATA_ALLOW": "localhost"})
        add_mcp_resource(d2, RESOURCE)
        start_trusting(d2, ca)
        assert_login_page(start(Browser(d2), mcp_request(outside, "http://127.0.0.1:61011/callback")))
        d3 = new_deputy({**LOOPBACK_FETCH, "DEPUTY_CLIENT_METADATA_ALLOW": "tools.example.org"})
        add_mcp_resource(d3, RESOURCE)
        start_trusting(d3, ca)
        n = srv.count(path_of(outside))
        assert_error_page(start(Browser(d3), mcp_request(outside, "http://127.0.0.1:61011/callback")), 400)
        assert srv.count(path_of(outside)) == n


def test_blocked_document_client(env):
    """`deputy client block URL`: the operator's answer to a misbehaving
    self-described client. /authorize shows an error page (no redirect),
    /token refuses it (401 invalid_client, RFC 6749 §5.2), and its tokens
    are revoked (RFC 7009 §2.2 semantics: `deputy trace` shows them
    inactive)."""
    d, srv = env.d, env.srv
    client_id = new_doc(srv)
    req = mcp_request(client_id, "http://127.0.0.1:61012/callback")
    q = sign_in_and_allow(Browser(d), req, "alice")
    tok = assert_token_ok(redeem(d, req, q["code"], resource=RESOURCE))
    jti = jwt_parts(tok["access_token"])[1]["jti"]
    assert d.cli("trace", jti)["token"]["active"] is True
    d.cli("client", "block", client_id)
    assert_error_page(start(Browser(d), mcp_request(client_id, "http://127.0.0.1:61012/callback")), 400)
    r = requests.post(d.token_endpoint, data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                              "client_id": client_id, "resource": RESOURCE}, timeout=15)
    assert_oauth_error(r, 401, "invalid_client")
    assert d.cli("trace", jti)["token"]["active"] is False


def test_document_cache_honours_max_age_within_min_and_max(new_deputy, tmp_path):
    """CIMD §4.3 (caching per RFC 9111): a fetched document is used for its
    `Cache-Control: max-age`, but at least client_metadata_min_cache and at
    most client_metadata_max_cache seconds; the cache is deputy's database
    row, so the counts below are fetches seen by the document server."""
    ca, cert, key = make_tls_files(tmp_path / "tls")
    with DocServer(cert, key) as srv:
        def doc(max_age: int) -> str:
            path = f"/cache/{uuid.uuid4().hex[:8]}.json"
            url = srv.url(path)
            srv.put_json(path, client_document(url, ["http://127.0.0.1/callback"]),
                         headers={"Cache-Control": f"max-age={max_age}"})
            return url

        def authorize(d, url):
            assert_login_page(start(Browser(d), mcp_request(url, "http://127.0.0.1:61012/callback")))

        d = new_deputy({**LOOPBACK_FETCH, "DEPUTY_CLIENT_METADATA_MIN_CACHE": "0",
                        "DEPUTY_CLIENT_METADATA_MAX_CACHE": "2"})
        add_mcp_resource(d, RESOURCE)
        start_trusting(d, ca)
        # max-age honoured: used again without a fetch.
        long = doc(1000)
        authorize(d, long)
        authorize(d, long)
        assert srv.count(path_of(long)) == 1
        # max-age=0 with no minimum: fetched for every use.
        fresh = doc(0)
        authorize(d, fresh)
        authorize(d, fresh)
        assert srv.count(path_of(fresh)) == 2
        # ... and max-age=1000 is cut to the 2 s maximum.
        time.sleep(3.1)
        authorize(d, long)
        assert srv.count(path_of(long)) == 2

        d2 = new_deputy({**LOOPBACK_FETCH, "DEPUTY_CLIENT_METADATA_MIN_CACHE": "600"})
        add_mcp_resource(d2, RESOURCE)
        start_trusting(d2, ca)
        # The minimum holds even for max-age=0.
        floor = doc(0)
        authorize(d2, floor)
        authorize(d2, floor)
        assert srv.count(path_of(floor)) == 1


def test_unusable_document_is_backed_off_like_a_failed_fetch(env):
    """A document that answers 200 but is not a usable client (here its
    client_id is not its URL) is refused, and naming it again at once does
    not make deputy fetch it again (the per-URL backoff of failed fetches):
    anyone can name any URL, so deputy must not become a request amplifier."""
    d, srv = env.d, env.srv
    path = f"/clients/{uuid.uuid4().hex[:10]}.json"
    url = srv.url(path)
    srv.put_json(path, client_document(srv.url("/someone-else.json"), ["http://127.0.0.1/callback"]))
    for _ in range(3):
        assert_error_page(start(Browser(d), mcp_request(url, "http://127.0.0.1:61013/callback")), 400)
    assert srv.count(path) == 1, srv.requests
