"""Trainer formats from real records, written as JSONL and loaded back with Hugging Face datasets."""

import json

import datasets  # tools/setup-deps installs it: a missing package fails these tests, never skips them
import pytest

from synthd import formats
from synthd.formats import FormatError
from synthd.hf import to_dataset, to_dataset_dict
from conftest import SHAPES

SCHEMAS = ["instruction_v1", "preference_v1", "eval_v1", "conflict_v1"]
VALID = [(s, f) for s in SCHEMAS for f in formats.FORMATS
         if not (f == "trl-dpo" and s in ("instruction_v1", "eval_v1"))]
INVALID = [(s, "trl-dpo") for s in ("instruction_v1", "eval_v1")]


@pytest.fixture(scope="module")
def recs(client, schema_jobs):
    return {name: list(client.records(job.job_id)) for name, job in schema_jobs.items()}


def expected_pair(schema, r):
    if schema == "instruction_v1":
        return (r["instruction"] + ("\n\n" + r["input"] if r["input"] else ""), r["output"])
    if schema == "preference_v1":
        return r["prompt"], r["chosen"]
    if schema == "eval_v1":
        return r["input"], r["ideal_output"]
    res = r["data"]["resolution"]
    out = {x["drive"]: x["output"] for x in r["data"]["responses"]}
    return r["data"]["input"], out[res["preferred_drive"]]


@pytest.mark.parametrize("schema,fmt", VALID)
def test_each_format_from_each_schema(recs, schema, fmt):
    for r in recs[schema]:
        row = formats.convert(r, fmt)
        assert list(row) == formats.columns(fmt)
        prompt, response = expected_pair(schema, r)
        if fmt in ("trl-messages", "openai-chat"):
            assert row["messages"] == [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        elif fmt == "sharegpt":
            assert row["conversations"] == [{"from": "human", "value": prompt}, {"from": "gpt", "value": response}]
        elif fmt == "trl-prompt-completion":
            assert row == {"prompt": prompt, "completion": response}
        elif fmt == "alpaca":
            if schema == "instruction_v1":
                assert row == {"instruction": r["instruction"], "input": r["input"], "output": r["output"]}
            else:
                assert row == {"instruction": prompt, "input": "", "output": response}
        elif fmt == "trl-dpo":
            if schema == "preference_v1":
                assert row == {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            else:
                res = r["data"]["resolution"]
                out = {x["drive"]: x["output"] for x in r["data"]["responses"]}
                assert row == {"prompt": r["data"]["input"], "chosen": out[res["preferred_drive"]],
                               "rejected": out[res["losing_drive"]]}
                assert row["chosen"] != row["rejected"]


def test_a_system_prompt_goes_where_the_format_has_a_place(recs):
    r = recs["instruction_v1"][0]
    assert formats.convert(r, "trl-messages", system="Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}
    assert formats.convert(r, "sharegpt", system="Be brief.")["conversations"][0] == {"from": "system", "value": "Be brief."}
    assert formats.convert(r, "alpaca", system="Be brief.")["system"] == "Be brief."
    for fmt in ("trl-prompt-completion", "trl-dpo"):
        with pytest.raises(FormatError):
            formats.convert(recs["preference_v1"][0], fmt, system="Be brief.")


@pytest.mark.parametrize("schema,fmt", INVALID)
def test_pairs_that_make_no_sense_are_refused(recs, schema, fmt):
    with pytest.raises(FormatError, match="preference_v1 or conflict_v1"):
        formats.convert(recs[schema][0], fmt)
    with pytest.raises(FormatError):
        formats.converter(fmt, schema=schema)


def test_conflict_records_without_resolution_are_refused_by_every_format(recs):
    for fmt in formats.FORMATS:
        with pytest.raises(FormatError, match="no resolution"):
            formats.convert(recs["conflict_none"][0], fmt)


def test_unknown_format_and_non_records():
    with pytest.raises(FormatError, match="unknown format"):
        formats.converter("jsonl-ish")
    with pytest.raises(FormatError):
        formats.convert({"hello": "world"}, "alpaca")


@pytest.mark.parametrize("schema,fmt", VALID)
def test_exported_jsonl_loads_with_datasets(recs, tmp_path, schema, fmt):
    path = tmp_path / f"{schema}-{fmt}.jsonl"
    assert formats.write_jsonl(recs[schema], str(path), fmt) == len(recs[schema])
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == formats.columns(fmt)
    assert ds.num_rows == len(recs[schema])
    assert ds[0] == formats.convert(recs[schema][0], fmt)
    if fmt in ("trl-messages", "openai-chat"):
        assert [m["role"] for m in ds[0]["messages"]] == ["user", "assistant"]


@pytest.mark.parametrize("schema,fmt", VALID)
def test_to_dataset_in_each_format(client, schema_jobs, recs, schema, fmt):
    ds = to_dataset(schema_jobs[schema].job_id, client, format=fmt)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == formats.columns(fmt) and ds.num_rows == len(recs[schema])
    assert ds.to_list() == [formats.convert(r, fmt) for r in recs[schema]]


def test_to_dataset_refuses_a_pair_that_makes_no_sense(client, schema_jobs):
    with pytest.raises(FormatError):
        to_dataset(schema_jobs["instruction_v1"].job_id, client, format="trl-dpo")
    with pytest.raises(FormatError):
        to_dataset(schema_jobs["instruction_v1"].job_id, client, format="parquet")


def test_to_dataset_raw_records_and_streaming(client, schema_jobs, recs):
    for schema in SCHEMAS:
        ds = to_dataset(schema_jobs[schema].job_id, client)
        assert ds.column_names == SHAPES[schema] and ds.num_rows == len(recs[schema])
    live = to_dataset(schema_jobs["preference_v1"].job_id, client, format="trl-dpo", streaming=True)
    assert isinstance(live, datasets.IterableDataset)
    assert list(live) == [formats.convert(r, "trl-dpo") for r in recs["preference_v1"]]


def test_to_dataset_dict_has_every_split(client, split_job):
    dd = to_dataset_dict(split_job.job_id, client, format="alpaca")
    assert {k: v.num_rows for k, v in dd.items()} == {"train": 210, "validation": 60, "test": 30}
    assert dd["test"].to_list() == [formats.convert(r, "alpaca") for r in client.records(split_job.job_id, "test")]
    assert json.dumps(dd["train"][0])  # plain JSON-able rows


@pytest.mark.parametrize("schema,fmt", VALID)
def test_synth_results_format_matches_the_python_converters(server, client, schema_jobs, recs, schema, fmt):
    """`synth results ID --format F` (the Swift CLI) writes exactly what `synthd.formats` makes."""
    import subprocess
    from harness import bin_dir
    system = None if fmt in ("trl-prompt-completion", "trl-dpo") else "Be brief."
    cmd = [str(bin_dir() / "synth"), "results", schema_jobs[schema].job_id, "--format", fmt,
           "--address", server.unix_address, "--api-key", server.key]
    if system:
        cmd += ["--system", system]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [formats.convert(r, fmt, system=system) for r in recs[schema]]


def test_synth_results_format_refuses_what_makes_no_sense(server, schema_jobs):
    import subprocess
    from harness import bin_dir
    base = [str(bin_dir() / "synth"), "results", "--address", server.unix_address, "--api-key", server.key]
    r = subprocess.run(base + [schema_jobs["instruction_v1"].job_id, "--format", "trl-dpo"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "preference_v1 or conflict_v1" in r.stderr
    r = subprocess.run(base + [schema_jobs["instruction_v1"].job_id, "--format", "csv-ish"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "trl-messages" in r.stderr
    r = subprocess.run(base + [schema_jobs["conflict_none"].job_id, "--format", "alpaca"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no preferred response" in r.stderr
