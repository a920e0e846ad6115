"""deputy on PostgreSQL over TLS (issue 13: "TLS when the URL says
`sslmode=require`, via OpenSSL").

PostgreSQL only (DEPUTY_CONFORMANCE_POSTGRES set): the test starts a cluster
of its own with scripts/pg-cluster, gives it a server certificate for
127.0.0.1 issued by a CA made here (Python `cryptography`, not deputy's
code), and turns `ssl` on. deputy finds the CA through OpenSSL's standard
SSL_CERT_FILE. deputy verifies the server's certificate and host name
(stricter than libpq's `require`, which only encrypts): a server it cannot
verify is refused, never used in the clear."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import PG_BASE, REPO, Deputy, basic_auth, clean_env, pg_schema_url, psql

pytestmark = pytest.mark.skipif(PG_BASE is None, reason="PostgreSQL only: set DEPUTY_CONFORMANCE_POSTGRES")

PG_CLUSTER = str(REPO / "scripts" / "pg-cluster")
API = "https://api.example/"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key, ca_cert, ip: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("deputy test postgres"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pg_cluster(*args: str) -> str:
    r = subprocess.run([PG_CLUSTER, *args], capture_output=True, text=True, timeout=180, env=clean_env())
    assert r.returncode == 0, f"pg-cluster {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}"
    return r.stdout.strip()


@pytest.fixture(scope="module")
def tls_cluster():
    """(URL with sslmode=require, path of the CA that issued the server's
    certificate, path of an unrelated CA)."""
    d = Path(tempfile.mkdtemp(prefix="deputy-pgtls-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        url = pg_cluster("start", str(d / "pg"))
        ca_key, ca_cert = make_ca("deputy test CA")
        srv_key, srv_cert = make_server_cert(ca_key, ca_cert, "127.0.0.1")
        data = d / "pg" / "data"
        (data / "server.crt").write_bytes(pem(srv_cert))
        (data / "server.key").write_bytes(srv_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        os.chmod(data / "server.key", 0o600)
        if os.geteuid() == 0:
            for f in ("server.crt", "server.key"):
                shutil.chown(data / f, "postgres", "postgres")
        # ssl can be turned on with a reload (PostgreSQL >= 10).
        psql(url, "ALTER SYSTEM SET ssl = on")
        psql(url, "SELECT pg_reload_conf()")
        tls_url = url + "?sslmode=require"
        r = subprocess.run(["psql", "-X", "-tA", "-d", tls_url, "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                           capture_output=True, text=True, timeout=30, env=clean_env())
        assert r.stdout.strip() == "t", (r.stdout, r.stderr)
        (d / "ca.pem").write_bytes(pem(ca_cert))
        (d / "other-ca.pem").write_bytes(pem(make_ca("some other CA")[1]))
        yield tls_url, d / "ca.pem", d / "other-ca.pem"
    finally:
        subprocess.run([PG_CLUSTER, "stop", str(d / "pg")], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def test_deputy_serves_over_tls_and_every_connection_is_encrypted(tls_cluster, tmp_path, monkeypatch, request):
    """Issue 13 (TLS when the URL says sslmode=require, OpenSSL): with the CA
    trusted, `deputy migrate`, management commands and `serve` work on the
    sslmode=require URL; a client credentials token is issued and
    introspects active; PostgreSQL reports every one of deputy's connections
    as TLS (pg_stat_ssl)."""
    url, ca, _ = tls_cluster
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    d = Deputy(tmp_path / "tls", pg_base=url)
    request.node._deputies = [d]
    try:
        secret = d.add_client("svc", "client_secret_basic", audiences=(API,))["client_secret"]
        d.start()
        r = requests.post(d.token_endpoint, data={"grant_type": "client_credentials"},
                          headers=basic_auth("svc", secret), timeout=10)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = requests.post(d.url("/introspect"), data={"token": token}, headers=basic_auth("svc", secret),
                          timeout=10)
        assert r.status_code == 200 and r.json()["active"] is True, r.text
        rows = psql(url, "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                         "WHERE a.datname = 'deputy' AND a.backend_type = 'client backend' "
                         "AND a.pid <> pg_backend_pid()").split()
        assert rows and set(rows) == {"t"}, rows
    finally:
        d.stop()


@pytest.mark.parametrize("case", ["unknown-ca", "wrong-host"])
def test_an_unverifiable_server_is_refused_not_used_in_the_clear(tls_cluster, tmp_path, monkeypatch, case):
    """Issue 13 (TLS via OpenSSL): a server whose certificate does not chain
    to a trusted CA, or does not name the host deputy dialled (the
    certificate names 127.0.0.1; deputy dials localhost), is refused: the
    command fails with one line naming the database problem, and nothing is
    written."""
    url, ca, other = tls_cluster
    if case == "unknown-ca":
        monkeypatch.setenv("SSL_CERT_FILE", str(other))
        target = url
    else:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        target = url.replace("127.0.0.1", "localhost")
    d = Deputy(tmp_path / case, pg_base=url)
    d.database = pg_schema_url(target, d.schema)
    r = d.run("migrate")
    assert r.returncode != 0, r.stdout
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "certificate" in err.lower(), err
    tables = psql(url, f"SELECT count(*) FROM pg_tables WHERE schemaname = '{d.schema}'")
    assert tables == "0", tables
