"""Converters from synthd records to the formats trainers take.

Every format is built from two views of a record:

- the **pair** ``(prompt, response)``:

  ============== ====================================================== ======================================
  schema         prompt                                                 response
  ============== ====================================================== ======================================
  instruction_v1 ``instruction``, then ``"\\n\\n"`` + ``input`` if not empty ``output``
  preference_v1  ``prompt``                                             ``chosen``
  eval_v1        ``input``                                              ``ideal_output``
  conflict_v1    ``data.input``                                         the output of ``data.resolution.preferred_drive``
  ============== ====================================================== ======================================

- the **preference triple** ``(prompt, chosen, rejected)``: preference_v1 as it stands; conflict_v1
  as ``(data.input, preferred drive's output, losing drive's output)``. instruction_v1 and eval_v1
  have no rejected response, so the DPO format refuses them.

A conflict_v1 record made with ``resolution_mode: "none"`` has no resolution, hence no preferred
response: every format refuses it.

The formats (``system`` is an optional system prompt, added only where the format has a place for it):

================================ =============================================================================
``trl-messages``                 ``{"messages": [{"role": "system", ...}?, {"role": "user", "content": prompt},
                                 {"role": "assistant", "content": response}]}``: TRL SFT, conversational
``trl-prompt-completion``        ``{"prompt": prompt, "completion": response}``: TRL SFT, standard
``trl-dpo``                      ``{"prompt", "chosen", "rejected"}``: TRL DPO (and reward modelling), standard
``alpaca``                       ``{"instruction", "input", "output"}`` (+ ``"system"``). instruction_v1 keeps
                                 its own ``input``; the other schemas put the whole prompt in ``instruction``
                                 and leave ``input`` empty
``sharegpt``                     ``{"conversations": [{"from": "system", ...}?, {"from": "human", "value":
                                 prompt}, {"from": "gpt", "value": response}]}``
``openai-chat``                  ``{"messages": [...]}`` as ``trl-messages``: OpenAI fine-tuning chat JSONL
================================ =============================================================================

``system`` is refused for ``trl-prompt-completion`` and ``trl-dpo``, whose standard form has no
place for it. Metadata and provenance are not carried into any format.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

SCHEMAS = ("instruction_v1", "preference_v1", "eval_v1", "conflict_v1")
FORMATS = ("trl-messages", "trl-prompt-completion", "trl-dpo", "alpaca", "sharegpt", "openai-chat")
_NO_SYSTEM = ("trl-prompt-completion", "trl-dpo")


class FormatError(ValueError):
    """A record cannot be written in the format asked for (or the format is unknown)."""


def record_schema(record: Dict[str, Any]) -> str:
    """The schema of a record: ``provenance.schema`` (or conflict_v1's own ``schema`` field)."""
    prov = record.get("provenance")
    if isinstance(prov, dict) and prov.get("schema") in SCHEMAS:
        return prov["schema"]
    if record.get("schema") in SCHEMAS:
        return record["schema"]
    if "instruction" in record and "output" in record:
        return "instruction_v1"
    if "chosen" in record and "rejected" in record:
        return "preference_v1"
    if "ideal_output" in record:
        return "eval_v1"
    if isinstance(record.get("data"), dict) and "responses" in record["data"]:
        return "conflict_v1"
    raise FormatError(f"not a synthd record of a known schema (keys: {sorted(record)[:8]})")


def _conflict_drives(record: Dict[str, Any]) -> Tuple[str, str, str]:
    data = record.get("data") or {}
    res = data.get("resolution")
    if not res:
        raise FormatError("this conflict_v1 record has no resolution (the job used resolution_mode \"none\"), "
                          "so it has no preferred response to train on")
    outputs = {r.get("drive"): r.get("output", "") for r in data.get("responses", [])}
    preferred, losing = res.get("preferred_drive"), res.get("losing_drive")
    if preferred not in outputs or losing not in outputs:
        raise FormatError(f"conflict_v1 record {record.get('record_id', '')}: the resolution names drives "
                          f"({preferred}, {losing}) that have no response")
    return data.get("input", ""), outputs[preferred], outputs[losing]


def pair(record: Dict[str, Any], schema: Optional[str] = None) -> Tuple[str, str]:
    """``(prompt, response)`` of a record (see the module's table)."""
    schema = schema or record_schema(record)
    if schema == "instruction_v1":
        prompt = record["instruction"]
        if record.get("input"):
            prompt = prompt + "\n\n" + record["input"]
        return prompt, record["output"]
    if schema == "preference_v1":
        return record["prompt"], record["chosen"]
    if schema == "eval_v1":
        return record["input"], record["ideal_output"]
    if schema == "conflict_v1":
        prompt, chosen, _ = _conflict_drives(record)
        return prompt, chosen
    raise FormatError(f"unknown schema {schema!r}")


def triple(record: Dict[str, Any], schema: Optional[str] = None) -> Tuple[str, str, str]:
    """``(prompt, chosen, rejected)`` of a preference_v1 or conflict_v1 record."""
    schema = schema or record_schema(record)
    if schema == "preference_v1":
        return record["prompt"], record["chosen"], record["rejected"]
    if schema == "conflict_v1":
        return _conflict_drives(record)
    raise FormatError(f"trl-dpo needs a chosen and a rejected response: preference_v1 or conflict_v1 records, "
                      f"not {schema}")


def _chat(system: Optional[str], prompt: str, response: str, role="role", text="content",
          names=("system", "user", "assistant")) -> List[Dict[str, str]]:
    turns = [{role: names[0], text: system}] if system else []
    turns.append({role: names[1], text: prompt})
    turns.append({role: names[2], text: response})
    return turns


def check_format(format: str, schema: Optional[str] = None, system: Optional[str] = None) -> None:
    """Raises `FormatError` for an unknown format, a schema the format cannot take, or a system
    prompt the format has no place for."""
    if format not in FORMATS:
        raise FormatError(f"unknown format {format!r}: one of {', '.join(FORMATS)}")
    if schema is not None and schema not in SCHEMAS:
        raise FormatError(f"unknown schema {schema!r}: one of {', '.join(SCHEMAS)}")
    if format == "trl-dpo" and schema in ("instruction_v1", "eval_v1"):
        raise FormatError(f"trl-dpo needs a chosen and a rejected response: preference_v1 or conflict_v1 records, "
                          f"not {schema}")
    if system and format in _NO_SYSTEM:
        raise FormatError(f"{format} has no place for a system prompt; use trl-messages, openai-chat, sharegpt or alpaca")


def convert(record: Dict[str, Any], format: str, *, system: Optional[str] = None,
            schema: Optional[str] = None) -> Dict[str, Any]:
    """One record in ``format`` (see the module's table)."""
    check_format(format, schema, system)
    schema = schema or record_schema(record)
    if format == "trl-dpo":
        p, c, r = triple(record, schema)
        return {"prompt": p, "chosen": c, "rejected": r}
    if format == "alpaca":
        if schema == "instruction_v1":
            out = {"instruction": record["instruction"], "input": record.get("input", ""), "output": record["output"]}
        else:
            p, r = pair(record, schema)
            out = {"instruction": p, "input": "", "output": r}
        if system:
            out["system"] = system
        return out
    p, r = pair(record, schema)
    if format == "trl-prompt-completion":
        return {"prompt": p, "completion": r}
    if format == "sharegpt":
        return {"conversations": _chat(system, p, r, "from", "value", ("system", "human", "gpt"))}
    return {"messages": _chat(system, p, r)}  # trl-messages, openai-chat


class Converter:
    """A picklable callable that converts one record to a format."""

    def __init__(self, format: str, system: Optional[str] = None, schema: Optional[str] = None):
        check_format(format, schema, system)
        self.format, self.system, self.schema = format, system, schema

    def __call__(self, record: Dict[str, Any]) -> Dict[str, Any]:
        return convert(record, self.format, system=self.system, schema=self.schema)

    def __repr__(self) -> str:
        return f"Converter({self.format!r})"


def converter(format: str, *, system: Optional[str] = None, schema: Optional[str] = None) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    """A function converting one record to ``format``; checks the format (and schema) at once."""
    return Converter(format, system, schema)


def columns(format: str, *, system: Optional[str] = None) -> List[str]:
    """The top-level keys of every row in ``format``."""
    check_format(format, None, system)
    return {
        "trl-messages": ["messages"], "openai-chat": ["messages"], "sharegpt": ["conversations"],
        "trl-prompt-completion": ["prompt", "completion"], "trl-dpo": ["prompt", "chosen", "rejected"],
        "alpaca": ["instruction", "input", "output"] + (["system"] if system else []),
    }[format]


def write_jsonl(records: Iterable[Dict[str, Any]], path: str, format: Optional[str] = None, *,
                system: Optional[str] = None) -> int:
    """Writes records (converted to ``format``, or as they are) to a JSONL file; returns the count."""
    conv = converter(format, system=system) if format else None
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(conv(rec) if conv else rec, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n
