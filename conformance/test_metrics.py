"""Operators' metrics: `GET /metrics` in the Prometheus text format (0.0.4)
on the listener `metrics_bind` names, never on the public port. The
exposition is parsed with the Prometheus project's own Python parser
(`prometheus_client.parser`), independent of deputy's code."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import assert_oauth_error, assert_token_ok, basic_auth, free_port, jwt_parts
from flows import SignInError, add_client, add_user, authorize, refresh, revoke, settings, sign_in

API = "https://api.example/"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def scrape(port: int) -> tuple[requests.Response, dict]:
    """The exposition and its samples: {(name, frozenset(labels)): value}."""
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200, r.text[:500]
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r, samples


def sample(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_on_their_own_listener_count_token_requests_tokens_and_refusals(new_deputy):
    """With DEPUTY_METRICS_BIND set: three client_credentials grants and one
    bad secret at /token, and one token-exchange request from a client not
    registered for it, show up as the request counter for route /token by
    status, a latency histogram with buckets, tokens issued by kind and
    grant_type, a token-exchange refusal by error code, and build info.
    /metrics on the public port is 404; the metrics port serves nothing else."""
    mport = free_port()
    d = new_deputy({"DEPUTY_METRICS_BIND": f"127.0.0.1:{mport}"})
    c = d.add_client("metrics-svc", "client_secret_basic", scopes=["read"], audiences=[API])
    d.start()
    auth = basic_auth(c["id"], c["client_secret"])
    for _ in range(3):
        assert_token_ok(d.token({"grant_type": "client_credentials"}, headers=auth))
    r = d.token({"grant_type": "client_credentials"}, headers=basic_auth(c["id"], "wrong-" + "x" * 40))
    assert_oauth_error(r, 401, "invalid_client")
    r = d.token({"grant_type": EXCHANGE, "subject_token": "x",
                 "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}, headers=auth)
    assert_oauth_error(r, 400, "unauthorized_client")

    resp, samples = scrape(mport)
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = resp.text
    requests_name = "deputy_http_request_duration_seconds"
    # The request counter for /token by status (a histogram's _count).
    assert sample(samples, requests_name + "_count", route="/token", method="POST", status="200") == 3, text
    assert sample(samples, requests_name + "_count", route="/token", method="POST", status="401") == 1, text
    assert sample(samples, requests_name + "_count", route="/token", method="POST", status="400") == 1, text
    # Its buckets: cumulative, ending in +Inf with every request.
    assert sample(samples, requests_name + "_bucket", route="/token", method="POST", status="200",
                  le="+Inf") == 3, text
    assert f'{requests_name}_bucket{{route="/token",method="POST",status="200",le="0.005"}}' in text
    assert sample(samples, requests_name + "_sum", route="/token", method="POST", status="200") > 0
    # Route patterns, not raw paths: the health probes are one series.
    assert sample(samples, requests_name + "_count", route="/healthz", method="GET", status="200") >= 1
    # Tokens issued by kind and grant.
    assert sample(samples, "deputy_tokens_issued_total", kind="access", grant_type="client_credentials") == 3
    assert sample(samples, "deputy_tokens_issued_total", kind="refresh", grant_type="client_credentials") is None
    assert sample(samples, "deputy_token_exchange_refusals_total", error="unauthorized_client") == 1, text
    build = [(dict(labels), v) for (name, labels), v in samples.items() if name == "deputy_build_info"]
    assert len(build) == 1 and build[0][1] == 1 and build[0][0]["version"], build
    assert "# TYPE deputy_http_request_duration_seconds histogram" in text
    assert "# TYPE deputy_tokens_issued_total counter" in text
    assert sample(samples, "deputy_revocations_total", source="endpoint") == 0
    assert sample(samples, "deputy_store_commit_seconds_count") >= 3

    # Never on the public port.
    r = d.get("/metrics")
    assert r.status_code == 404
    assert "deputy_" not in r.text
    # The metrics port serves only /metrics.
    assert requests.get(f"http://127.0.0.1:{mport}/token", timeout=10).status_code == 404
    assert requests.post(f"http://127.0.0.1:{mport}/metrics", timeout=10).status_code == 405
    # ... and the 404 above was counted as an unmatched route, not by its path.
    _, samples = scrape(mport)
    assert sample(samples, requests_name + "_count", route="unmatched", method="GET", status="404") == 1
    assert not any(dict(labels).get("route") == "/metrics" for (_, labels) in samples)


def test_metrics_count_a_persons_tokens_refresh_reuse_revocation_and_failed_login(new_deputy):
    """Two sign-ins (authorization_code: access, id and refresh tokens each),
    one rotation (refresh_token grant), the rotated token presented again
    (reuse detected, strict grace), a client revoking an access token at
    /revoke, and a wrong password at the login form are each counted."""
    mport = free_port()
    d = new_deputy(settings(DEPUTY_METRICS_BIND=f"127.0.0.1:{mport}", DEPUTY_REFRESH_GRACE="0"))
    add_user(d, "alice", "correct horse battery staple")
    add_client(d, "web")
    d.start()
    scope = "openid notes:read"
    first = sign_in(d, "web", "alice", "correct horse battery staple", scope)
    second = sign_in(d, "web", "alice", "correct horse battery staple", scope)
    assert_token_ok(refresh(d, "web", first["refresh_token"]))
    assert_oauth_error(refresh(d, "web", first["refresh_token"]), 400, "invalid_grant")
    assert revoke(d, second["access_token"], "web", None).status_code == 200
    with pytest.raises(SignInError):
        authorize(d, "web", "alice", "not the password", scope)

    _, samples = scrape(mport)
    code = "authorization_code"
    for kind in ("access", "id", "refresh"):
        assert sample(samples, "deputy_tokens_issued_total", kind=kind, grant_type=code) == 2, kind
    assert sample(samples, "deputy_tokens_issued_total", kind="access", grant_type="refresh_token") == 1
    assert sample(samples, "deputy_tokens_issued_total", kind="refresh", grant_type="refresh_token") == 1
    assert sample(samples, "deputy_refresh_reuse_detections_total") == 1
    assert sample(samples, "deputy_revocations_total", source="endpoint") == 1
    assert sample(samples, "deputy_revocations_total", source="admin") == 0
    assert sample(samples, "deputy_login_failures_total", reason="bad_credentials") == 1
    assert sample(samples, "deputy_login_failures_total", reason="throttled") == 0
    requests_name = "deputy_http_request_duration_seconds_count"
    assert sample(samples, requests_name, route="/login", method="POST", status="401") == 1
    assert sample(samples, requests_name, route="/authorize", method="GET", status="200") == 3

    # An admin revocation that revokes something counts once; the same one
    # again (nothing left to revoke) does not (README, Metrics).
    ops = d.cli("client", "add", "--id", "ops", "--kind", "service", "--auth", "client_secret_basic",
                "--scope", "deputy:admin", "--audience", d.issuer)
    admin = assert_token_ok(requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                                          headers=basic_auth("ops", ops["client_secret"]), timeout=10))
    third = sign_in(d, "web", "alice", "correct horse battery staple", scope)
    jti = jwt_parts(third["access_token"])[1]["jti"]
    for expected_revoked in (True, False):
        r = requests.post(d.url("/admin/revoke"), json={"jti": jti}, timeout=10,
                          headers={"Authorization": f"Bearer {admin['access_token']}"})
        assert r.status_code == 200 and (r.json()["revoked"] > 0) == expected_revoked, r.text
    _, samples = scrape(mport)
    assert sample(samples, "deputy_revocations_total", source="admin") == 1


def test_metrics_are_off_by_default(new_deputy):
    """Without metrics_bind nothing listens for metrics and the public port
    has no /metrics."""
    d = new_deputy()
    d.start()
    assert d.get("/metrics").status_code == 404
    assert "metrics serving" not in d.log_tail()


def test_metrics_bind_must_not_be_the_public_address(new_deputy):
    """metrics_bind equal to bind stops start-up with one line naming it."""
    d = new_deputy()
    r = d.run("serve", "--issuer", d.issuer, "--bind", f"127.0.0.1:{d.port}",
              "--metrics-bind", f"127.0.0.1:{d.port}")
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert "setting `metrics_bind`: must not be the `bind` address" in line, r.stderr
