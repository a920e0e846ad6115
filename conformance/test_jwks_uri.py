"""Clients registered with a jwks_uri (RFC 7591 §2 jwks_uri, OIDC Core §10.1.1,
RFC 7523 §3 item 9). Loopback http URIs need allow_loopback_jwks_uri."""

import json
import time

import pytest

from conftest import (ClientKey, Deputy, LocalHTTP, assert_oauth_error, assert_token_ok, assertion_form,
                      free_port, jwt_parts, make_assertion)

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
