"""Clients registered with a jwks_uri (RFC 7591 §2 jwks_uri, OIDC Core §10.1.1,
RFC 7523 §3 item 9). Loopback http URIs need allow_loopback_jwks_uri."""

import datetime
import json
import select
import socket
import socketserver
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from conftest import (ClientKey, Deputy, LocalHTTP, LoopbackServer, assert_oauth_error, assert_token_ok,
                      assertion_form, free_port, jwt_parts, make_assertion)

ALLOW = {"DEPUTY_ALLOW_LOOPBACK_JWKS_URI": "true"}


def refused(resp):
    assert_oauth_error(resp, 401, "invalid_client")


def test_http_jwks_uri_refused_without_loopback_setting(tmp_path):
    """jwks_uri must be https unless the development setting allows loopback
    http; the refusal is exit 1 with one line on stderr and nothing written."""
    d = Deputy(tmp_path / "no-allow")
    with LocalHTTP(ClientKey("ES256").jwks()) as srv:
        r = d.run("client", "add", "--id", "uri-client", "--kind", "service", "--auth", "private_key_jwt",
                  "--jwks-uri", srv.url(), "--audience", "https://api.example/")
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("deputy: error:"), r.stderr
        assert "panicked" not in r.stderr
        assert r.stdout.strip() == ""
        assert srv.count() == 0
    assert d.cli("client", "list") == []


def test_jwks_uri_refused_for_non_http_schemes(tmp_path):
    d = Deputy(tmp_path / "scheme", ALLOW)
    for uri in ("file:///etc/passwd", "ftp://127.0.0.1/jwks", "http://192.0.2.1/jwks", "not a uri"):
        r = d.run("client", "add", "--id", "uri-client", "--kind", "service", "--auth", "private_key_jwt",
                  "--jwks-uri", uri, "--audience", "https://api.example/")
        assert r.returncode == 1, uri
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert d.cli("client", "list") == []


@pytest.fixture
def uri_env(new_deputy):
    d = new_deputy(ALLOW)
    with LocalHTTP() as srv:
        yield d, srv


def test_jwks_uri_client_authenticates_rfc7523_s3_item_9(uri_env):
    """The client's keys are fetched from its jwks_uri and verify its assertion;
    the fetched set is cached (not refetched per request)."""
    d, srv = uri_env
    k1 = ClientKey("ES256", kid="uri-k1")
    srv.body = k1.jwks()
    c = d.add_client("uri-client", "private_key_jwt", jwks_uri=srv.url(), alg="ES256")
    assert c["jwks_uri"] == srv.url()
    d.start()
    body = assert_token_ok(d.token(assertion_form(make_assertion(k1, "uri-client", d.issuer))))
    assert jwt_parts(body["access_token"])[1]["sub"] == "uri-client"
    assert srv.count() >= 1
    n = srv.count()
    for _ in range(3):
        assert_token_ok(d.token(assertion_form(make_assertion(k1, "uri-client", d.issuer))))
    assert srv.count() == n, "JWKS refetched for a known kid"
    # A key not in the fetched set does not authenticate
    refused(d.token(assertion_form(make_assertion(ClientKey("ES256", kid="uri-k1"), "uri-client", d.issuer))))


@pytest.mark.engine_independent
def test_jwks_uri_rotated_client_key_is_picked_up_by_refetch(uri_env):
    """OIDC Core §10.1.1: the client rotates its key (new kid) at its jwks_uri;
    deputy refetches on the unknown kid (rate-limited) and then accepts it, and
    the removed key stops working."""
    d, srv = uri_env
    k1 = ClientKey("ES256", kid="rot-k1")
    k2 = ClientKey("ES256", kid="rot-k2")
    srv.body = k1.jwks()
    d.add_client("rot-client", "private_key_jwt", jwks_uri=srv.url(), alg="ES256")
    d.start()
    assert_token_ok(d.token(assertion_form(make_assertion(k1, "rot-client", d.issuer))))
    fetches = srv.count()
    srv.body = k2.jwks()
    deadline = time.monotonic() + 45
    ok = False
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        r = d.token(assertion_form(make_assertion(k2, "rot-client", d.issuer)))
        if r.status_code == 200:
            ok = True
            break
        refused(r)
        time.sleep(1.0)
    assert ok, "new client key never accepted after rotation"
    assert srv.count() > fetches
    # Unknown kids must not make deputy fetch on every request.
    assert srv.count() - fetches <= attempts
    refused(d.token(assertion_form(make_assertion(k1, "rot-client", d.issuer))))


def test_jwks_uri_unreachable_is_invalid_client(uri_env):
    """A jwks_uri that cannot be fetched yields 401 invalid_client, not a 5xx."""
    d, _ = uri_env
    dead = f"http://127.0.0.1:{free_port()}/jwks"
    k = ClientKey("ES256")
    d.add_client("dead-uri", "private_key_jwt", jwks_uri=dead, alg="ES256")
    d.start()
    refused(d.token(assertion_form(make_assertion(k, "dead-uri", d.issuer))))


def test_jwks_uri_serving_private_keys_is_not_used(uri_env):
    """A fetched set with private key material is refused as a whole."""
    d, srv = uri_env
    k = ClientKey("ES256", kid="priv-k")
    srv.body = {"keys": [json.loads(k.jwk.export_private())]}
    d.add_client("priv-uri", "private_key_jwt", jwks_uri=srv.url(), alg="ES256")
    d.start()
    refused(d.token(assertion_form(make_assertion(k, "priv-uri", d.issuer))))


def test_server_without_loopback_setting_does_not_fetch(new_deputy):
    """A loopback jwks_uri client registered while the setting was on is not
    fetched by a server running without it: 401, no request made."""
    d = new_deputy()
    k = ClientKey("ES256", kid="nf-k1")
    with LocalHTTP(k.jwks()) as srv:
        d.add_client("nf-client", "private_key_jwt", jwks_uri=srv.url(), alg="ES256", env_extra=ALLOW)
        d.start()
        refused(d.token(assertion_form(make_assertion(k, "nf-client", d.issuer))))
        time.sleep(0.2)
        assert srv.count() == 0


# --------------------------------------------------------------------------
# The outbound fetch itself: deadline, redirects, SSRF, single flight,
# negative caching, capacity (OWASP SSRF Prevention Cheat Sheet; RFC 6890;
# the SSRF section of the OAuth Client ID Metadata Document draft).
# --------------------------------------------------------------------------

# deputy's deadline for one whole fetch (DNS, connect, TLS, headers and body).
FETCH_DEADLINE = 5.0
# What a debug build on a busy 2-core machine may add to it.
MARGIN = 2.5


class KeyServer(LoopbackServer):
    """A raw TCP key server that records every connection: how many at once,
    how many in all, and whether the peer closed each one. `mode`:
    "trickle" answers 200 headers, then one body byte every 0.2 s, forever;
    "stall" answers 200 headers, then nothing; "silent" reads nothing and
    answers nothing (a bare TCP listener, for checking no one connects)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.active = 0
        self.max_active = 0
        self.total = 0
        self.paths: list[str] = []
        self.closed_by_peer = 0
        self.connected_at: list[float] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with outer.lock:
                    outer.active += 1
                    outer.total += 1
                    outer.max_active = max(outer.max_active, outer.active)
                    outer.connected_at.append(time.monotonic())
                try:
                    if outer._serve_one(self.request):
                        with outer.lock:
                            outer.closed_by_peer += 1
                finally:
                    with outer.lock:
                        outer.active -= 1

            def finish(self):
                pass

        self._serve(Handler)

    def _peer_closed(self, sock: socket.socket, wait: float) -> bool:
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return False
        try:
            return sock.recv(4096) == b""
        except OSError:
            return True

    def _serve_one(self, sock: socket.socket) -> bool:
        """Serve one connection for at most 30 s; True once the peer closed it."""
        deadline = time.monotonic() + 30
        if self.mode != "silent":
            head = b""
            sock.settimeout(10)
            try:
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return True
                    head += chunk
            except OSError:
                return True
            with self.lock:
                self.paths.append(head.split(b" ")[1].decode("latin-1") if b" " in head else "")
            try:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{")
            except OSError:
                return True
        while time.monotonic() < deadline and not self.stop.is_set():
            if self._peer_closed(sock, 0.2):
                return True
            if self.mode == "trickle":
                try:
                    sock.sendall(b" ")
                except OSError:
                    return True
        return False

    def https_url(self, host: str = "127.0.0.1", path: str = "/jwks") -> str:
        return f"https://{host}:{self.port}{path}"

    def count(self) -> int:
        with self.lock:
            return self.total

    def wait_for(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if pred(self):
                    return True
            time.sleep(0.05)
        with self.lock:
            return pred(self)

    def __exit__(self, *exc):
        self.stop.set()
        super().__exit__(*exc)


class Redirector(LoopbackServer):
    """Answers every GET with 302 to `location`, and counts requests."""

    def __init__(self, location: str):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits += 1
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self._serve(Handler)


def timed_token(d: Deputy, client_id: str, key: ClientKey, **claims):
    start = time.monotonic()
    r = requests.post(d.token_endpoint, data=assertion_form(make_assertion(key, client_id, d.issuer, **claims)),
                      timeout=20)
    return r, time.monotonic() - start


@pytest.mark.engine_independent
def test_trickling_key_server_is_cut_at_the_deadline(new_deputy):
    """RFC 7523 §3: the keys that verify an assertion come from the client's
    jwks_uri, but a key server that sends its headers and then trickles the
    body must not hold the request or the connection: one deadline covers
    the whole fetch (OWASP SSRF Prevention Cheat Sheet: bound what a server
    fetches on a caller's behalf). The answer is 401 invalid_client within
    the deadline, and the key server sees its connection closed."""
    d = new_deputy(ALLOW)
    with KeyServer("trickle") as ks:
        d.add_client("slow-keys", "private_key_jwt", jwks_uri=ks.url("/jwks"), alg="ES256")
        d.start()
        r, took = timed_token(d, "slow-keys", ClientKey("ES256"))
        refused(r)
        assert took < FETCH_DEADLINE + MARGIN, f"answered after {took:.1f}s"
        assert ks.wait_for(lambda s: s.closed_by_peer == s.total == 1 and s.active == 0, 3), \
            f"connection not closed: total={ks.total} closed={ks.closed_by_peer} active={ks.active}"


@pytest.mark.engine_independent
def test_stalled_key_server_single_flight_and_backoff(new_deputy):
    """50 concurrent assertions naming a client whose key server stalls share
    one fetch (single flight: the key server sees at most one connection at a
    time), every one is answered 401 invalid_client within the deadline, and
    after that failure no new fetch is made during the backoff (negative
    caching), so unauthenticated callers cannot make deputy open connections
    at will (OWASP SSRF Prevention Cheat Sheet; RFC 7523 §3)."""
    d = new_deputy(ALLOW)
    key = ClientKey("ES256")
    with KeyServer("stall") as ks:
        d.add_client("stall-keys", "private_key_jwt", jwks_uri=ks.url("/jwks"), alg="ES256")
        d.start()
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda _: timed_token(d, "stall-keys", key), range(50)))
        for r, took in results:
            refused(r)
            assert took < FETCH_DEADLINE + MARGIN + 1.0, f"answered after {took:.1f}s"
        assert ks.max_active == 1, f"{ks.max_active} connections at once"
        first = ks.count()
        assert first == 1, f"{first} connections for one failing fetch"
        # Within the backoff: answered at once, nothing fetched.
        for _ in range(10):
            r, took = timed_token(d, "stall-keys", key)
            refused(r)
            assert took < 1.0, f"answered after {took:.1f}s during the backoff"
        time.sleep(0.3)
        assert ks.count() == first, "a new fetch during the backoff"


@pytest.mark.engine_independent
def test_redirecting_jwks_uri_is_not_followed(new_deputy):
    """A jwks_uri answering 302 is a failed fetch: deputy does not follow it
    (OWASP SSRF Prevention Cheat Sheet: redirects would lead past the address
    checks, e.g. from https to http on an internal host), the redirect target
    sees no request, and the answer is 401 invalid_client."""
    d = new_deputy(ALLOW)
    key = ClientKey("ES256", kid="redir-k1")
    with LocalHTTP(key.jwks()) as target, Redirector(target.url()) as redirector:
        d.add_client("redir-keys", "private_key_jwt", jwks_uri=redirector.url("/jwks"), alg="ES256")
        d.start()
        refused(d.token(assertion_form(make_assertion(key, "redir-keys", d.issuer))))
        assert redirector.hits == 1
        time.sleep(0.2)
        assert target.count() == 0, "redirect followed"


@pytest.mark.engine_independent
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_jwks_uri_on_loopback_is_never_connected_without_dev_setting(new_deputy, host):
    """SSRF: an https jwks_uri passes registration, but where it leads is
    checked after name resolution, before connecting: loopback addresses
    (a literal, a name resolving to one, or the IPv4-mapped IPv6 form) are
    special-purpose addresses (RFC 6890) deputy never connects to unless the
    development setting allows loopback (OWASP SSRF Prevention Cheat Sheet;
    OAuth Client ID Metadata Document draft, SSRF section). The listener
    sees no connection and the answer is 401 invalid_client."""
    d = new_deputy()
    key = ClientKey("ES256")
    with KeyServer("silent") as listener:
        uri = listener.https_url(host)
        c = d.add_client("ssrf-keys", "private_key_jwt", jwks_uri=uri, alg="ES256")
        assert c["jwks_uri"] == uri
        d.start()
        refused(d.token(assertion_form(make_assertion(key, "ssrf-keys", d.issuer))))
        time.sleep(0.3)
        assert listener.count() == 0, f"deputy connected to {uri}"


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 3700},
    {"aud": "https://someone-else.example/token"},
    {"jti": None},
], ids=["expired", "wrong-aud", "no-jti"])
def test_unacceptable_claims_fetch_nothing_rfc7523_s3(uri_env, claims):
    """RFC 7523 §3 items 3, 4 and 7 (aud, exp, jti) are checked before the
    client's keys are fetched: an assertion that would be refused anyway
    (401 invalid_client) never makes deputy fetch its jwks_uri."""
    d, srv = uri_env
    key = ClientKey("ES256", kid="claims-k1")
    srv.body = key.jwks()
    d.add_client("claims-keys", "private_key_jwt", jwks_uri=srv.url(), alg="ES256")
    d.start()
    claims = dict(claims)
    aud = claims.pop("aud", d.issuer)
    refused(d.token(assertion_form(make_assertion(key, "claims-keys", aud, **claims))))
    time.sleep(0.2)
    assert srv.count() == 0, "keys fetched for an assertion refused on its claims"
    # The same client with acceptable claims is fetched and accepted.
    assert_token_ok(d.token(assertion_form(make_assertion(key, "claims-keys", d.issuer))))
    assert srv.count() == 1


@pytest.mark.engine_independent
def test_outbound_fetch_capacity_is_bounded_503(new_deputy):
    """Outbound fetches in progress at once are bounded (16): with all of
    them held by stalled key servers, a request needing another fetch is
    answered at once with 503 temporarily_unavailable and Retry-After
    (RFC 6749 §5.2 / §4.1.2.1 error code; RFC 9110 §15.6.4 and §10.2.3) —
    deputy's capacity, not the client's fault — instead of queueing."""
    d = new_deputy(ALLOW)
    key = ClientKey("ES256")
    with KeyServer("stall") as ks:
        for i in range(17):
            d.add_client(f"cap-{i}", "private_key_jwt", jwks_uri=ks.url(f"/jwks/{i}"), alg="ES256")
        d.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            held = [pool.submit(timed_token, d, f"cap-{i}", key) for i in range(16)]
            assert ks.wait_for(lambda s: s.total >= 16, FETCH_DEADLINE), f"only {ks.count()} fetches started"
            r, took = timed_token(d, "cap-16", key)
            body = assert_oauth_error(r, 503, "temporarily_unavailable")
            assert r.headers.get("Retry-After", "").isdigit(), r.headers
            assert took < 1.0, f"answered after {took:.1f}s"
            assert ks.count() == 16, body
            for f in held:
                refused(f.result()[0])


def make_tls_files(directory) -> tuple[str, str, str]:
    """A test CA and a server certificate for the name `localhost` only,
    made with `cryptography`: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("deputy test CA")).issuer_name(name("deputy test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [str(directory / n) for n in ("ca.pem", "cert.pem", "key.pem")]
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths[0], paths[1], paths[2]


class LocalHTTPS(LocalHTTP):
    """LocalHTTP behind TLS with the given certificate."""

    def __init__(self, body: dict, cert: str, key: str):
        super().__init__(body)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)

    def https_url(self, host: str) -> str:
        return f"https://{host}:{self.port}/jwks"


def test_tls_verification_stays_on_with_ssl_cert_file(new_deputy, tmp_path, monkeypatch):
    """The fetcher keeps OpenSSL's certificate and host name verification
    (RFC 9110 §4.3.4; RFC 6125): a key server whose certificate chains to a CA
    trusted through SSL_CERT_FILE and names the host is used; the same server
    reached under a name its certificate lacks (127.0.0.1), or without its CA
    trusted, is refused with 401 invalid_client."""
    ca, cert, key_pem = make_tls_files(tmp_path)
    d = new_deputy(ALLOW)
    k = ClientKey("ES256", kid="tls-k1")
    with LocalHTTPS(k.jwks(), cert, key_pem) as srv:
        d.add_client("tls-name", "private_key_jwt", jwks_uri=srv.https_url("localhost"), alg="ES256")
        d.add_client("tls-ip", "private_key_jwt", jwks_uri=srv.https_url("127.0.0.1"), alg="ES256")
        monkeypatch.setenv("SSL_CERT_FILE", ca)
        d.start()
        assert_token_ok(d.token(assertion_form(make_assertion(k, "tls-name", d.issuer))))
        assert srv.count() == 1
        refused(d.token(assertion_form(make_assertion(k, "tls-ip", d.issuer))))
        monkeypatch.delenv("SSL_CERT_FILE")
        d.restart()
        refused(d.token(assertion_form(make_assertion(k, "tls-name", d.issuer))))
        assert srv.count() == 1, "a request was sent over an unverified connection"
