"""The CLI and configuration, seen from outside: JSON on success, one line
`deputy: error: ...` and exit 1 on failure, nothing written on refusal;
settings from TOML, DEPUTY_* env and flags take effect; bad settings stop
start-up with one line naming the setting."""

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import (DEPUTY_BIN, ClientKey, Deputy, assert_oauth_error, assert_token_ok, assertion_form,
                      basic_auth, clean_env, jwt_parts, make_assertion, sqlite_only)

API = "https://api.example/"


def assert_one_line_error(r: subprocess.CompletedProcess, *must_contain: str):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("deputy: error: "), lines[0]
    assert "panicked" not in r.stderr and "RUST_BACKTRACE" not in r.stderr
    for s in must_contain:
        assert s in lines[0], (s, lines[0])
    assert r.stdout.strip() == ""
    return lines[0]


def serve_cmd(d: Deputy, *extra: str, issuer: str | None = None):
    args = ["serve", "--bind", f"127.0.0.1:{d.port}"]
    if issuer is not None:
        args += ["--issuer", issuer]
    return args + list(extra)


# ---------------------------------------------------------------- migrate


def test_migrate_twice(tmp_path):
    """The second `deputy migrate` applies nothing and reports the same version."""
    d = Deputy(tmp_path)
    first = d.cli("migrate")
    assert first["applied"], first
    assert first["version"] == max(first["applied"])
    second = d.cli("migrate")
    assert second == {"applied": [], "version": first["version"]}


def test_migrate_creates_database_directory_like_other_commands(tmp_path):
    """`deputy migrate` (the documented first step) works on a fresh install:
    with the default database path data/deputy.db in an empty directory, and
    with a --database whose parent directory does not exist yet, just as
    `client list` does."""
    sqlite_only("the default database path and a --database file whose directory is created")
    d = Deputy(tmp_path / "fresh")
    r = d.run("migrate", global_opts=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["applied"]
    assert (d.root / "data" / "deputy.db").is_file()
    nested = tmp_path / "nested" / "sub" / "deputy.db"
    r = d.run("--database", str(nested), "migrate", global_opts=False)
    assert r.returncode == 0, r.stderr
    assert nested.is_file()


# ---------------------------------------------------------------- client add refusals


@pytest.fixture
def cli_env(tmp_path):
    d = Deputy(tmp_path / "cli")
    existing = d.add_client("existing", "client_secret_basic")
    return d, existing


def _bad_jwks_files(root: Path):
    key = ClientKey("ES256", kid="x")
    files = {}
    files["not_json"] = "{this is not json"
    files["no_keys_member"] = json.dumps({"kty": "EC"})
    files["empty_set"] = json.dumps({"keys": []})
    files["private_key"] = json.dumps({"keys": [json.loads(key.jwk.export_private())]})
    files["symmetric_key"] = json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "s"}]})
    files["rsa_private"] = json.dumps({"keys": [json.loads(ClientKey("RS256").jwk.export_private())]})
    out = {}
    for name, text in files.items():
        p = root / f"{name}.json"
        p.write_text(text)
        out[name] = p
    return out


BAD_ADDS = {
    "unknown_grant": ["--id", "c1", "--kind", "service", "--auth", "client_secret_basic", "--grant", "password"],
    "unknown_grant_implicit": ["--id", "c1", "--kind", "service", "--auth", "client_secret_basic",
                               "--grant", "implicit"],
    "duplicate_id": ["--id", "existing", "--kind", "service", "--auth", "client_secret_basic"],
    "redirect_uri_with_fragment": ["--id", "c1", "--kind", "app", "--auth", "none",
                                   "--redirect-uri", "https://app.example/cb#frag"],
    "alg_hs256": ["--id", "c1", "--kind", "service", "--auth", "private_key_jwt", "--alg", "HS256",
                  "--jwks-file", "@ec"],
    "alg_none": ["--id", "c1", "--kind", "service", "--auth", "private_key_jwt", "--alg", "none",
                 "--jwks-file", "@ec"],
    "ec_key_for_rs256": ["--id", "c1", "--kind", "service", "--auth", "private_key_jwt", "--alg", "RS256",
                         "--jwks-file", "@ec"],
    "jwt_client_without_keys": ["--id", "c1", "--kind", "service", "--auth", "private_key_jwt"],
    "jwks_for_secret_client": ["--id", "c1", "--kind", "service", "--auth", "client_secret_basic",
                               "--jwks-file", "@ec"],
    "unknown_auth": ["--id", "c1", "--kind", "service", "--auth", "client_secret_jwt"],
    "id_with_space": ["--id", "bad id", "--kind", "service", "--auth", "client_secret_basic"],
}


@pytest.mark.parametrize("case", sorted(BAD_ADDS) + ["jwks:" + n for n in
                                                      ("not_json", "no_keys_member", "empty_set", "private_key",
                                                       "symmetric_key", "rsa_private")])
def test_client_add_refusals_write_nothing(cli_env, case):
    """Bad input to `client add`: exit 1, one line on stderr, nothing on stdout,
    nothing written (client list unchanged)."""
    d, _ = cli_env
    before = d.cli("client", "list")
    ec = ClientKey("ES256", kid="ec").write_jwks(d.root / "ec.json")
    if case.startswith("jwks:"):
        f = _bad_jwks_files(d.root)[case[5:]]
        args = ["--id", "c1", "--kind", "service", "--auth", "private_key_jwt", "--jwks-file", str(f)]
        if case == "jwks:rsa_private":
            args += ["--alg", "RS256"]
    else:
        args = [str(ec) if a == "@ec" else a for a in BAD_ADDS[case]]
    r = d.run("client", "add", *args)
    assert_one_line_error(r)
    assert d.cli("client", "list") == before


def test_client_secret_is_shown_once_and_not_stored_in_clear(cli_env):
    """The generated secret appears only in `client add` output; show/list never
    print it, and the database does not contain it in clear."""
    d, existing = cli_env
    secret = existing["client_secret"]
    assert len(secret) == 43
    shown = d.run("client", "show", "existing")
    listed = d.run("client", "list")
    assert shown.returncode == 0 and listed.returncode == 0
    assert secret not in shown.stdout and "client_secret" not in json.loads(shown.stdout)
    assert secret not in listed.stdout
    blobs = d.stored_bytes()
    assert secret.encode() not in blobs


def test_client_show_unknown_and_remove(cli_env):
    d, _ = cli_env
    assert_one_line_error(d.run("client", "show", "nope"))
    assert_one_line_error(d.run("client", "remove", "nope"))
    d.cli("client", "remove", "existing")
    assert_one_line_error(d.run("client", "show", "existing"))
    assert d.cli("client", "list") == []


def test_jwks_file_client_roundtrip(cli_env):
    """`--jwks-file` with public keys is accepted and shown back without
    private members; default alg ES256 and default grant for a service."""
    d, _ = cli_env
    k = ClientKey("ES256", kid="rt")
    c = d.add_client("rt-client", "private_key_jwt", key=k)
    assert c["auth_method"] == "private_key_jwt"
    assert c["assertion_alg"] == "ES256"
    assert c["grant_types"] == ["client_credentials"]
    assert "client_secret" not in c
    jwks = c["jwks"]["keys"]
    assert len(jwks) == 1 and jwks[0]["x"] == k.public_dict()["x"] and "d" not in jwks[0]


# ---------------------------------------------------------------- users and resources


def test_user_add_reads_password_from_stdin(tmp_path):
    d = Deputy(tmp_path)
    pw = "correct horse battery"
    u = d.cli("user", "add", "--username", "alice", "--email", "alice@example.com", "--name", "Alice",
              "--password-stdin", input=pw + "\n")
    assert u["username"] == "alice" and u["email"] == "alice@example.com" and u["disabled"] is False
    assert pw not in json.dumps(u)
    assert_one_line_error(d.run("user", "add", "--username", "bob", "--password-stdin", input="short\n"))
    assert_one_line_error(d.run("user", "add", "--username", "alice", "--password-stdin", input=pw + "\n"))
    users = d.cli("user", "list")
    assert [x["username"] for x in users] == ["alice"]
    assert pw not in json.dumps(users)
    blobs = d.stored_bytes()
    assert pw.encode() not in blobs
    d.cli("user", "disable", "alice")
    assert d.cli("user", "list")[0]["disabled"] is True


def test_user_add_is_audited(tmp_path):
    """README (Audit trail): person changes are audited. `user add` records one
    `person_added` event by an administrator naming the new person; refused
    adds record nothing."""
    d = Deputy(tmp_path)
    before = int(time.time())
    u = d.cli("user", "add", "--username", "carol", "--password-stdin", input="long enough pw\n")
    assert_one_line_error(d.run("user", "add", "--username", "carol", "--password-stdin", input="another pw\n"))
    assert_one_line_error(d.run("user", "add", "--username", "dave", "--password-stdin", input="short\n"))
    events = d.cli("audit", "--event", "person_added")
    assert [(e["event"], e["mode"], e["outcome"], e["person"]) for e in events] == \
        [("person_added", "admin", "ok", u["id"])], events
    assert before <= events[0]["at"] <= int(time.time())
    assert d.cli("audit", f"--person={u['id']}") == events  # an id may begin with "-"


def test_resource_add_list_remove(tmp_path):
    d = Deputy(tmp_path)
    r = d.cli("resource", "add", "--id", API, "--scope", "read=Read things", "--scope", "write=Write")
    assert r["id"] == API and r["scopes"] == {"read": "Read things", "write": "Write"}
    assert [x["id"] for x in d.cli("resource", "list")] == [API]
    d.cli("resource", "remove", API)
    assert d.cli("resource", "list") == []
    assert_one_line_error(d.run("resource", "remove", API))


def test_output_to_a_reader_that_stops_early_is_not_a_crash(tmp_path):
    """`deputy resource list | head -1`: the closed pipe ends the output
    quietly (exit 0, no panic message), as with any Unix tool."""
    d = Deputy(tmp_path)
    for i in range(200):
        d.cli("resource", "add", "--id", f"https://r{i}.example/")
    cmd = [DEPUTY_BIN, "--database", str(d.database), "--keys-dir", str(d.keys_dir), "resource", "list"]
    p = subprocess.Popen(cmd, cwd=d.root, env=clean_env(d.settings), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.read(2) == b"[\n"
    p.stdout.close()  # the reader goes away before the rest is written
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert b"panicked" not in err, err


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args,line", [
    (["--bogus", "client", "list"], "unexpected argument '--bogus' found"),
    (["nosuch"], "unrecognized subcommand 'nosuch'"),
    (["audit", "--since", "abc"], "invalid value 'abc' for '--since <SINCE>': invalid digit found in string"),
    (["client", "add", "--id", "c1"], "the following required arguments were not provided: "
                                      "--kind <KIND>, --auth <AUTH>"),
    (["client", "add", "--id", "c1", "--kind", "service", "--auth", "private_key_jwt",
      "--jwks-file", "a.json", "--jwks-uri", "https://a.example/jwks"],
     "the argument '--jwks-file <JWKS_FILE>' cannot be used with '--jwks-uri <JWKS_URI>'"),
    (["client"], "a command is required (usage: deputy client [OPTIONS] <COMMAND>)"),
])
def test_usage_errors_are_one_line_exit_1(tmp_path, args, line):
    """README (Command line): a refused command line is one line
    `deputy: error: ...` and exit 1, like every other failure (not clap's
    multi-line usage and exit 2); nothing is written."""
    d = Deputy(tmp_path)
    r = d.run(*args)
    assert assert_one_line_error(r) == f"deputy: error: {line}"
    assert list(d.root.iterdir()) == []
    if d.is_pg:
        assert d.pg_tables() == []


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["client", "--help"]])
def test_help_and_version_exit_0(tmp_path, args):
    d = Deputy(tmp_path)
    r = d.run(*args, global_opts=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and r.stderr == ""


# ---------------------------------------------------------------- serve configuration errors


def test_unparsable_issuer_stops_startup(tmp_path):
    """An unparsable issuer: non-zero exit, one line naming `issuer`, no panic."""
    d = Deputy(tmp_path)
    r = d.run(*serve_cmd(d, issuer="not a url"))
    assert r.returncode != 0
    assert_one_line_error(r, "issuer")


@pytest.mark.parametrize("issuer", ["https://id.example/?tenant=a", "https://id.example/#x", "ftp://id.example"])
def test_issuer_with_query_fragment_or_bad_scheme_rfc8414_s2(tmp_path, issuer):
    """RFC 8414 §2: the issuer is an https/http URL with no query or fragment."""
    d = Deputy(tmp_path)
    assert_one_line_error(d.run(*serve_cmd(d, issuer=issuer)), "issuer")


@pytest.mark.parametrize("issuer", ["https://user:pw@id.example", "https://user@id.example",
                                    "http://127.0.0.1:1/", "http://127.0.0.1:1/tenant", "https://id.example/a/"])
def test_issuer_with_userinfo_or_path_is_refused_rfc8414_s3_1(tmp_path, issuer):
    """RFC 8414 §2/§3.1, OIDC Discovery §4: deputy serves its endpoints and
    discovery at the origin root, and publishes the issuer exactly as
    configured, so a path, a trailing slash or credentials are refused, not
    rewritten or advertised."""
    d = Deputy(tmp_path)
    assert_one_line_error(d.run(*serve_cmd(d, issuer=issuer)), "setting `issuer`")


def _empty_setting_runs(d: Deputy, key: str):
    """The ways to set `key` to "": flag, DEPUTY_* variable, TOML file."""
    flag = "--" + key.replace("_", "-")
    other = {"database": ["--keys-dir", str(d.keys_dir)], "keys_dir": ["--database", str(d.database)]}[key]
    cfg = d.root / f"empty-{key}.toml"
    cfg.write_text(f'{key} = ""\n')
    return {
        "flag": ([flag, "", *other], {}),
        "env": (other, {f"DEPUTY_{key.upper()}": ""}),
        "toml": (["--config", str(cfg), *other], {}),
    }


EMPTY_SETTING_COMMANDS = [["migrate"], ["client", "list"], ["resource", "list"], ["user", "list"],
                          ["keys", "list"], ["keys", "rotate"], ["delegation", "list"], ["audit"]]


@pytest.mark.parametrize("key", ["database", "keys_dir"])
def test_empty_database_or_keys_dir_is_refused(tmp_path, key):
    """An empty `database` would make SQLite open a throw-away temporary
    database (changes "succeed" and vanish); an empty `keys_dir` is the
    current directory. Both are refused with one line naming the setting, by
    `serve` and by every command, and nothing is written."""
    d = Deputy(tmp_path / "inst")
    for how, (opts, env) in _empty_setting_runs(d, key).items():
        for cmd in [serve_cmd(d, issuer=f"http://127.0.0.1:{d.port}"), *EMPTY_SETTING_COMMANDS]:
            r = d.run(*opts, *cmd, env_extra=env, global_opts=False)
            line = assert_one_line_error(r, f"setting `{key}`")
            assert line == f"deputy: error: setting `{key}`: must not be empty", (how, cmd, line)
    left = sorted(p.name for p in d.root.iterdir() if not p.name.startswith("empty-"))
    assert left == [], left


@pytest.mark.parametrize("env", [{"DEPUTY_JWKS_MAX_AGE": "1000"}, {"DEPUTY_KEY_PREPUBLISH": "0"},
                                 {"DEPUTY_KEY_PREPUBLISH": "300"}])
def test_key_prepublish_must_outlast_jwks_max_age(tmp_path, env):
    """README (Keys): a rotated key is published longer than the JWKS cache
    max-age before it signs. Settings that break that promise stop start-up
    (and `keys rotate`) with one line naming both settings."""
    d = Deputy(tmp_path)
    for cmd in [serve_cmd(d, issuer=f"http://127.0.0.1:{d.port}"), ["keys", "rotate"]]:
        assert_one_line_error(d.run(*cmd, env_extra=env), "key_prepublish", "jwks_max_age")
    assert not d.keys_dir.exists() or list(d.keys_dir.iterdir()) == []
    if d.is_pg:
        assert d.pg_count("signing_keys") == 0


def test_unknown_key_in_config_file_is_named(tmp_path):
    d = Deputy(tmp_path)
    cfg = tmp_path / "deputy.toml"
    cfg.write_text('issuer = "http://127.0.0.1:1"\ncolour = "blue"\n')
    assert_one_line_error(d.run("--config", str(cfg), *serve_cmd(d)), "colour")
    # also after the subcommand
    assert_one_line_error(d.run(*serve_cmd(d), "--config", str(cfg)), "colour")


def test_bad_value_in_environment_is_named(tmp_path):
    d = Deputy(tmp_path)
    r = d.run(*serve_cmd(d, issuer=f"http://127.0.0.1:{d.port}"), env_extra={"DEPUTY_CLOCK_SKEW": "soon"})
    assert_one_line_error(r, "clock_skew")


def test_unwritable_keys_dir_is_named(tmp_path):
    """A keys dir that cannot be created (under a regular file) names keys_dir."""
    sqlite_only("keys_dir holds the signing keys only with SQLite (PostgreSQL keeps them sealed in the database)")
    blocker = tmp_path / "plainfile"
    blocker.write_text("x")
    d = Deputy(tmp_path / "inst")
    cmd = [DEPUTY_BIN, "--database", str(d.database), "--keys-dir", str(blocker / "keys"),
           *serve_cmd(d, issuer=f"http://127.0.0.1:{d.port}")]
    r = subprocess.run(cmd, cwd=d.root, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert_one_line_error(r, "keys_dir")


def test_settings_precedence_file_env_flag(tmp_path):
    """Settings: TOML file < DEPUTY_* env < command-line flag, observable in
    the served metadata's issuer (RFC 8414 §3.3)."""
    d = Deputy(tmp_path)
    cfg = tmp_path / "deputy.toml"
    cfg.write_text(f'issuer = "http://file.example:1"\nbind = "127.0.0.1:{d.port}"\n'
                   f'access_token_ttl = 77\n')

    def served_issuer(env_extra, flags):
        cmd = [DEPUTY_BIN, "--config", str(cfg), "--database", str(d.database),
               "--keys-dir", str(d.keys_dir), "serve", *flags]
        p = subprocess.Popen(cmd, cwd=d.root, env=clean_env({**d.engine_env(), **env_extra}),
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    r = requests.get(f"http://127.0.0.1:{d.port}/.well-known/openid-configuration", timeout=0.5)
                    return r.json()["issuer"]
                except requests.RequestException:
                    if p.poll() is not None:
                        raise AssertionError(p.stderr.read().decode())
                    time.sleep(0.05)
            raise AssertionError("server did not start")
        finally:
            p.terminate()
            p.wait(10)

    assert served_issuer({}, []) == "http://file.example:1"
    assert served_issuer({"DEPUTY_ISSUER": "http://env.example:2"}, []) == "http://env.example:2"
    assert served_issuer({"DEPUTY_ISSUER": "http://env.example:2"},
                         ["--issuer", "http://flag.example:3"]) == "http://flag.example:3"


# ---------------------------------------------------------------- settings take effect


def test_access_token_ttl_setting(new_deputy):
    d = new_deputy({"DEPUTY_ACCESS_TOKEN_TTL": "120"})
    c = d.add_client("ttl-svc", "client_secret_basic", audiences=[API])
    d.start()
    r = d.token({"grant_type": "client_credentials"}, headers=basic_auth(c["id"], c["client_secret"]))
    body = assert_token_ok(r)
    assert body["expires_in"] == 120
    claims = jwt_parts(body["access_token"])[1]
    assert claims["exp"] - claims["iat"] == 120


def test_clock_skew_and_assertion_max_age_settings_rfc7523_s3(new_deputy):
    """DEPUTY_CLOCK_SKEW=0 and DEPUTY_ASSERTION_MAX_AGE=60 change the exp/iat
    windows of client assertions."""
    d = new_deputy({"DEPUTY_CLOCK_SKEW": "0", "DEPUTY_ASSERTION_MAX_AGE": "60"})
    k = ClientKey("ES256")
    d.add_client("skew-svc", "private_key_jwt", key=k)
    d.start()
    now = int(time.time())

    def send(**claims):
        return d.token(assertion_form(make_assertion(k, "skew-svc", d.issuer, **claims)))

    assert_oauth_error(send(exp=now + 100), 401, "invalid_client")      # beyond 60 s max age
    assert_oauth_error(send(iat=now - 30, exp=now - 2), 401, "invalid_client")  # expired, no skew
    assert_oauth_error(send(iat=now + 20, exp=now + 50), 401, "invalid_client")  # iat in future, no skew
    assert_token_ok(send(exp=now + 50))


def test_removed_client_can_no_longer_authenticate(new_deputy):
    """`client remove` on a running server takes effect: 401 invalid_client."""
    d = new_deputy()
    c = d.add_client("gone-svc", "client_secret_basic", audiences=[API])
    d.start()
    hdr = basic_auth(c["id"], c["client_secret"])
    assert_token_ok(d.token({"grant_type": "client_credentials"}, headers=hdr))
    d.cli("client", "remove", "gone-svc")
    assert_oauth_error(d.token({"grant_type": "client_credentials"}, headers=hdr), 401, "invalid_client")
