"""DeleteJob and GetUsage through the Python client, against a real synthd."""
import pytest

import synthd
from conftest import request


def test_delete_an_ended_job_and_usage(client):
    before = client.usage()
    assert before["plan"] == "payg" and before["month"].count("-") == 1
    job = client.generate(request(12))
    done = client.wait(job.job_id, timeout=120)
    assert done.status == "succeeded"
    after = client.usage()
    assert after["records"] == before["records"] + 12
    assert after["balance_usd"] < before["balance_usd"]

    running = client.generate(request(50_000))
    with pytest.raises(synthd.FailedPrecondition) as e:
        client.delete(running.job_id)
    assert e.value.error_code == "JOB_NOT_ENDED"
    client.cancel(running.job_id)
    client.delete(running.job_id)

    gone = client.delete(job.job_id)
    assert gone == {"job_id": job.job_id, "records_deleted": 12, "export_bytes_deleted": gone["export_bytes_deleted"]}
    with pytest.raises(synthd.NotFound):
        client.job(job.job_id)
    with pytest.raises(synthd.NotFound):
        client.delete(job.job_id)
    # What was billed stays billed.
    assert client.usage()["records"] == after["records"]
