"""Behind a proxy (`trusted_proxies`): the address deputy keys its budgets
on is the peer's, unless the peer is a trusted proxy; then the right-most
X-Forwarded-For entry that is not one. Checked here with the failed client
authentication budget (RFC 6819 §5.1.4.2.3) from 127.0.0.1 acting as the
proxy, and with the setting's forms and errors at start-up."""

from conftest import assert_oauth_error, basic_auth

CC = {"grant_type": "client_credentials"}


def fail(d, n: int, xff: str | None):
    """A failed client authentication naming an unknown client of its own
    (so only the address's budget is spent), forwarding `xff`."""
    headers = basic_auth(f"nobody-{n}", "wrong-" + "x" * 40)
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    return d.token(CC, headers=headers)


def budget(**extra) -> dict:
    return {"DEPUTY_AUTH_FAILURE_LIMIT": "3", "DEPUTY_AUTH_FAILURE_WINDOW": "60", **extra}


def test_proxy_trusted_budget_is_kept_for_the_forwarded_client(new_deputy):
    """127.0.0.1 trusted: three failures forwarded for 198.51.100.1 spend that
    client's budget (the fourth is 429 with Retry-After), while another client
    behind the same proxy is still 401; entries the client put left of the
    proxy's own do not give it a fresh budget; an IPv6 client is one too."""
    d = new_deputy(budget(DEPUTY_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8"))
    d.start()
    for n in range(3):
        assert_oauth_error(fail(d, n, "198.51.100.1"), 401, "invalid_client")
    r = fail(d, 3, "198.51.100.1")
    assert_oauth_error(r, 429, "temporarily_unavailable")
    assert r.headers.get("Retry-After", "").isdigit()
    assert_oauth_error(fail(d, 4, "198.51.100.2"), 401, "invalid_client")
    # Spoofed left-most entries and a second trusted tier change nothing.
    for n, xff in enumerate(["203.0.113.9, 198.51.100.1", "10.0.0.1, 198.51.100.1, 10.0.0.7",
                             "unknown, 198.51.100.1"]):
        assert_oauth_error(fail(d, 5 + n, xff), 429, "temporarily_unavailable")
    for n in range(3):
        assert_oauth_error(fail(d, 10 + n, "2001:db8::1"), 401, "invalid_client")
    assert_oauth_error(fail(d, 13, "[2001:db8::1]:4711"), 429, "temporarily_unavailable")


def test_proxy_untrusted_peer_cannot_choose_its_address(new_deputy):
    """With no trusted proxies (the default) X-Forwarded-For is ignored: a
    client naming a new address each time still spends its own budget."""
    d = new_deputy(budget())
    d.start()
    for n in range(3):
        assert_oauth_error(fail(d, n, f"198.51.100.{n}"), 401, "invalid_client")
    assert_oauth_error(fail(d, 3, "198.51.100.77"), 429, "temporarily_unavailable")
    assert_oauth_error(fail(d, 4, None), 429, "temporarily_unavailable")


def test_proxy_list_from_a_toml_array(new_deputy):
    """The file form: a TOML array of strings."""
    d = new_deputy(budget())
    conf = d.root / "deputy.toml"
    conf.write_text('trusted_proxies = ["::1", "127.0.0.0/8"]\n')
    d.settings["DEPUTY_CONFIG"] = str(conf)
    d.start()
    for n in range(3):
        assert_oauth_error(fail(d, n, "198.51.100.1"), 401, "invalid_client")
    assert_oauth_error(fail(d, 3, "198.51.100.1"), 429, "temporarily_unavailable")
    assert_oauth_error(fail(d, 4, "198.51.100.2"), 401, "invalid_client")


def test_proxy_bad_blocks_stop_start_up_with_one_line(new_deputy):
    """A malformed address or block, as text or in a TOML list, stops
    `deputy serve` with one line naming the setting."""
    d = new_deputy()
    for value, message in [
        ("127.0.0.1, 10.0.0.0/33", "setting `trusted_proxies`: `10.0.0.0/33` has a prefix length that is not 0 to 32"),
        ("10.0.0.1/8", "setting `trusted_proxies`: `10.0.0.1/8` has bits set past its prefix"),
        ("proxy.internal", "setting `trusted_proxies`: `proxy.internal` is not an IP address or CIDR block"),
    ]:
        r = d.run("serve", "--issuer", d.issuer, "--bind", f"127.0.0.1:{d.port}",
                  env_extra={"DEPUTY_TRUSTED_PROXIES": value})
        assert r.returncode != 0, value
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], r.stderr
    conf = d.root / "bad.toml"
    conf.write_text('trusted_proxies = ["127.0.0.1", 8]\n')
    r = d.run("serve", "--issuer", d.issuer, "--bind", f"127.0.0.1:{d.port}",
              env_extra={"DEPUTY_CONFIG": str(conf)})
    assert r.returncode != 0
    assert "setting `trusted_proxies`: must be a list of strings" in r.stderr, r.stderr
    r = d.run("serve", "--issuer", d.issuer, "--bind", f"127.0.0.1:{d.port}",
              "--trusted-proxies", "10.0.0.0/8, nope")
    assert r.returncode != 0
    assert "setting `trusted_proxies`: `nope` is not an IP address or CIDR block" in r.stderr, r.stderr
