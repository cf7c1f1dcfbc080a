"""TLS and mutual TLS through the standard ssl module, against a real synthd with certificates this
test makes with openssl; read-only and expiring keys."""

import time

import pytest

import synthd
from conftest import request
from harness import Synthd, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def mtls_server(fake, pki):
    s = Synthd(fake, server={"tls": {"certificate_chain": pki("server.pem"), "private_key": pki("server.key"),
                                     "client_ca": pki("ca.pem")}})
    s.key = s.create_org("tls")
    s.start()
    yield s
    s.cleanup()


def test_a_job_runs_over_mutual_tls(mtls_server, pki):
    c = synthd.Client("tls:localhost:%d" % mtls_server.tcp_port, mtls_server.key, tls_ca=pki("ca.pem"),
                      tls_cert=pki("client.pem"), tls_key=pki("client.key"))
    job = c.wait(c.generate(request(8)).job_id, timeout=60)
    assert job.status == "succeeded"
    records = list(c.records(job.job_id))
    assert len(records) == 8 and all("instruction" in r for r in records)
    c.close()


def test_a_server_of_another_ca_is_refused(mtls_server, pki):
    c = synthd.Client("tls:127.0.0.1:%d" % mtls_server.tcp_port, mtls_server.key, tls_ca=pki("other-ca.pem"),
                      tls_cert=pki("client.pem"), tls_key=pki("client.key"))
    with pytest.raises(synthd.ConnectionLost) as e:
        c.jobs()
    assert "TLS handshake" in str(e.value) and "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_without_a_client_certificate_mutual_tls_refuses(mtls_server, pki):
    c = synthd.Client("tls:127.0.0.1:%d" % mtls_server.tcp_port, mtls_server.key, tls_ca=pki("ca.pem"))
    with pytest.raises(synthd.ConnectionLost) as e:
        c.jobs()
    assert "certificate" in str(e.value).lower()
    with pytest.raises(ValueError):
        synthd.Client("tls:127.0.0.1:1", "k", tls_cert=pki("client.pem"))


def test_a_read_only_expiring_key_reads_and_nothing_else(client, split_job):
    made = client.create_key("loader", read_only=True, expires_in=8)
    made_at = time.monotonic()
    assert made["info"]["scope"] == "read" and made["info"]["expires_at"]
    reader = synthd.Client(str(client.address), made["key"])
    assert reader.job(split_job.job_id).status == "succeeded"
    assert sum(1 for _ in reader.records(split_job.job_id)) == split_job.accepted
    with pytest.raises(synthd.PermissionDenied) as e:
        reader.generate(request(2))
    assert e.value.error_code == "KEY_SCOPE"
    with pytest.raises(synthd.PermissionDenied):
        reader.create_key("escalate")
    time.sleep(max(0.0, made_at + 8.5 - time.monotonic()))
    with pytest.raises(synthd.Unauthenticated) as e:
        reader.job(split_job.job_id)
    assert e.value.error_code == "KEY_EXPIRED"
    listed = {k["key_id"]: k for k in client.keys()}
    assert listed[made["info"]["key_id"]]["expired"] is True
    reader.close()
