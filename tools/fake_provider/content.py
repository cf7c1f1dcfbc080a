"""Content generation for the fake provider.

The fake reads directive lines from the prompt:

    SCHEMA: instruction_v1 | preference_v1 | eval_v1 | conflict_v1 | judge | invariants | preference_scores
    CATEGORY: ...   TECHNIQUE: ...   AXIS: ...   AXIS DESCRIPTION: ...   DRIVES: a,b   DOMAIN: ...

and produces one JSON record of that schema.  Text is assembled from the
word lists in vocabulary.py with a seeded random.Random, so the same seed
gives the same record, and different seeds give texts that share few
character trigrams.

Everything here is pure: callers pass in the random.Random to use.
"""

from __future__ import annotations

import copy
import json
import re
import random
from dataclasses import dataclass, field

import vocabulary as V

SCHEMAS = ("instruction_v1", "preference_v1", "eval_v1", "conflict_v1", "judge", "invariants", "preference_scores")
DEFAULT_SCHEMA = "instruction_v1"
REFUSAL_TEXT = "I can't help with that."

# Fields holding the long generated text, per schema.  A path is a tuple of
# keys / list indexes into the record.
MAIN_TEXT = {
    "instruction_v1": [("output",)],
    "preference_v1": [("chosen",), ("rejected",)],
    "eval_v1": [("ideal_output",)],
    "conflict_v1": [("responses", 0, "output"), ("responses", 1, "output")],
    "judge": [],
    "invariants": [],
    "preference_scores": [],
}
# The field that plays the role of the prompt / question in a record.
PROMPT_FIELD = {
    "instruction_v1": ("instruction",),
    "preference_v1": ("prompt",),
    "eval_v1": ("input",),
    "conflict_v1": ("input",),
}

MAIN_LEN = (200, 800)

_ASSESS = re.compile(r"^[ \t]*ASSESS[ \t]*:[ \t]*([A-Za-z0-9_.-]+)", re.MULTILINE)
_DIRECTIVE = re.compile(r"^[ \t]*(SCHEMA|CATEGORY|TECHNIQUE|AXIS DESCRIPTION|AXIS|DRIVES|DOMAIN)[ \t]*:[ \t]*(.*?)[ \t]*$",
                        re.MULTILINE)


# ------------------------------------------------------------------ prompts
@dataclass
class PromptInfo:
    schema: str = DEFAULT_SCHEMA
    category: str | None = None
    technique: str | None = None
    axis: str | None = None
    axis_description: str | None = None
    drives: list[str] = field(default_factory=list)
    domain: str | None = None
    directive_lines: list[str] = field(default_factory=list)   # raw lines, for leakage
    assess: list[str] = field(default_factory=list)            # judge: ASSESS lines, every one


_SCANS: dict[str, tuple[list, list]] = {}   # prompt part -> (directive matches, ASSESS names)
_SCANS_MAX = 1024


def _scan(part: str) -> tuple[list, list]:
    got = _SCANS.get(part)
    if got is None:
        got = ([(m.group(1), m.group(2)) for m in _DIRECTIVE.finditer(part)],
               [m.group(1) for m in _ASSESS.finditer(part)])
        if len(_SCANS) >= _SCANS_MAX:
            _SCANS.clear()
        _SCANS[part] = got
    return got


def parse_prompt(text: str, hint: str | None = None, parts=None) -> PromptInfo:
    """Read the directive lines.  The first occurrence of each key wins.

    `hint` (a tool name or response_format schema name) is used when there is
    no SCHEMA line; unknown names fall back to instruction_v1.

    `parts`, if given, is the same text split at line ends ("\n".join(parts) == text), e.g. one
    part per message.  Directives never span lines, so the parts are read one by one, and each
    part's reading is cached: a long system prompt sent with every request is read once.
    """
    if parts is None:
        parts = (text,)
    info = PromptInfo()
    seen: dict[str, str] = {}
    assess: list[str] = []
    for part in parts:
        directives, names = _scan(part)
        for key, value in directives:
            if key not in seen:
                seen[key] = value
                info.directive_lines.append(f"{key}: {value}")
        assess += names
    schema = seen.get("SCHEMA", "").strip().lower()
    if schema not in SCHEMAS:
        schema = hint if hint in SCHEMAS else DEFAULT_SCHEMA
    info.schema = schema
    info.category = seen.get("CATEGORY") or None
    info.technique = seen.get("TECHNIQUE") or None
    info.axis = seen.get("AXIS") or None
    info.axis_description = seen.get("AXIS DESCRIPTION") or None
    info.domain = seen.get("DOMAIN") or None
    drives = [d.strip() for d in seen.get("DRIVES", "").split(",") if d.strip()]
    info.drives = drives
    if not info.directive_lines:
        info.directive_lines = [f"SCHEMA: {schema}"]
    info.assess = assess
    return info


# ------------------------------------------------------------ text building
def plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _words(label: str | None) -> list[str]:
    """'code_generation/Python' -> ['code', 'generation', 'python']"""
    if not label:
        return []
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", label) if w]


def _human(label: str) -> str:
    return " ".join(_words(label)) or label


DETERMINERS = ["the", "a", "each", "every", "this", "that", "our", "their", "one", "any"]
PLURAL_DETERMINERS = ["the", "these", "those", "some", "many", "our", "their", "all"]

SENTENCES = [
    "{D} {A} {N} {V3} {D} {N} {P} {D} {N}.",
    "{R}, {D} {N} {V3} {D} {A} {N}.",
    "When {D} {N} {V3} {D} {N}, {D} {A} {N} {V3} {R}.",
    "{Ns} {V} {A} {Ns} {P} {D} {A} {N}.",
    "{D} {N} of {D} {N} {V3} {R} {P} {D} {N}.",
    "It is {A} to {V} {D} {N} before {D} {N} {V3}.",
    "{D} {A} {N} and {D} {N} {V} {DP} {Ns} {P} {D} {N}.",
    "Because {Ns} {V} {R}, {D} {N} {V3} {D} {A} {N}.",
    "Most {Ns} {V} {D} {N} only when {D} {A} {N} {V3}.",
    "{D} {N} should {V} {D} {A} {N} and then {V} {D} {N}.",
    "Without {D} {A} {N}, {Ns} {V} {Ns} {R}.",
    "Each {N} {V3} {D} {N}, so {D} {A} {N} {V3} {P} {D} {N}.",
    "{A} {Ns} rarely {V} {D} {N} {P} {D} {A} {N}.",
    "A good {N} {V3} {D} {N} {R} and {V3} {D} {A} {N}.",
    "First {V} {D} {A} {N}, then {V} {DP} {Ns} {P} {D} {N}.",
    "{Ns} {P} {D} {N} {V} {A} {Ns} and {A} {Ns}.",
]

INSTRUCTIONS = [
    "Explain how {D} {A} {N} {V3} {D} {N}{TOPIC}.",
    "Write a {A} {G} about {D} {N} that {V3} {D} {A} {N}.",
    "Describe why {Ns} {V} {A} {Ns}{TOPIC}.",
    "Summarize the {A} {N} of {D} {N} for {D} {N}.",
    "Compare {D} {N} with {D} {A} {N} and list the {A} {Ns}.",
    "List three ways to {V} {D} {A} {N}{TOPIC}.",
    "Give advice on how to {V} {D} {N} {P} {D} {N}.",
    "Draft a {G} that helps {D} {N} {V} {D} {A} {N}.",
    "Propose a plan to {V} {D} {A} {N} and {V} {D} {N}{TOPIC}.",
    "Outline the steps a {N} takes to {V} {D} {A} {N}.",
]

_SLOT = re.compile(r"\{(\w+)\}")
_AN = re.compile(r"\b([Aa]) ([aeiou])")

# ---- compiled templates
# Filling templates is most of the fake's CPU time per request, so each template is compiled once
# into a %-format string and its slots [(kind, word list, len, bit length), ...].  The words are
# drawn exactly as random.Random.choice draws them (see _draw_index_ok), in slot order, so the
# text is the same as filling the template slot by slot with rng.choice.
_CHOICE, _NOUN, _NOUNS, _TOPIC = 0, 1, 2, 3


def _compile(template: str) -> tuple[str, list[tuple]]:
    pieces = _SLOT.split(template)
    fmt = [pieces[0].replace("%", "%%")]
    ops = []
    for i in range(1, len(pieces), 2):
        s = pieces[i]
        fmt.append("%s" + pieces[i + 1].replace("%", "%%"))
        if s == "N":
            ops.append((_NOUN, None, 0, 0))
        elif s == "Ns":
            ops.append((_NOUNS, None, 0, 0))
        elif s == "TOPIC":
            ops.append((_TOPIC, None, 0, 0))
        else:
            words = _SLOT_WORDS.get(s)
            if words is None:
                raise KeyError(s)
            ops.append((_CHOICE, words, len(words), len(words).bit_length()))
    return "".join(fmt), ops


def _draw_index_ok() -> bool:
    """True if drawing getrandbits(n.bit_length()) until below n gives exactly rng.choice's index
    (CPython's Random._randbelow_with_getrandbits), checked on this interpreter at import."""
    a, b = random.Random(20240601), random.Random(20240601)
    for n in (1, 2, 3, 5, 7, 8, 10, 14, 16, 20, 42, 213, 218, 490, 1000):
        seq = range(n)
        k = n.bit_length()
        for _ in range(40):
            r = b.getrandbits(k)
            while r >= n:
                r = b.getrandbits(k)
            if a.choice(seq) != r:
                return False
    return a.random() == b.random()


class TextGen:
    """Builds sentences and paragraphs from the vocabulary with one RNG."""

    def __init__(self, rng: random.Random, info: PromptInfo | None = None):
        self.rng = rng
        info = info or PromptInfo()
        self.topic_words = [w for w in _words(info.domain) + _words(info.category) if len(w) > 2]
        self.domain = _human(info.domain) if info.domain else None

    def _noun(self) -> str:
        if self.topic_words and self.rng.random() < 0.08:
            return self.rng.choice(self.topic_words)
        return self.rng.choice(V.NOUNS)

    def _fill(self, template) -> str:
        """Fill a template (a string, or a _compile result) with words from the RNG."""
        if isinstance(template, str):
            template = _COMPILED.get(template) or _compile(template)
        fmt, ops = template
        r = self.rng
        words: list[str] = []
        put = words.append
        if _FAST_DRAW:
            bits = r.getrandbits
            topic = self.topic_words
            for kind, seq, n, k in ops:
                if kind == _CHOICE:
                    i = bits(k)
                    while i >= n:
                        i = bits(k)
                    put(seq[i])
                elif kind == _TOPIC:
                    put(f" in {self.domain}" if self.domain and r.random() < 0.7 else "")
                elif topic and r.random() < 0.08:          # _NOUN / _NOUNS: see _noun()
                    w = r.choice(topic)
                    put(w if kind == _NOUN else plural(w))
                else:
                    i = bits(_NOUNS_K)
                    while i >= _NOUNS_N:
                        i = bits(_NOUNS_K)
                    put(V.NOUNS[i] if kind == _NOUN else _NOUN_PLURALS[i])
        else:            # the same with rng.choice, for an interpreter whose choice draws differently
            for kind, seq, n, k in ops:
                if kind == _CHOICE:
                    put(r.choice(seq))
                elif kind == _TOPIC:
                    put(f" in {self.domain}" if self.domain and r.random() < 0.7 else "")
                elif kind == _NOUN:
                    put(self._noun())
                else:
                    put(plural(self._noun()))
        text = fmt % tuple(words)
        if "a " in text or "A " in text:
            text = _AN.sub(r"\1n \2", text)
        return text[0].upper() + text[1:]

    def sentence(self) -> str:
        if _FAST_DRAW:       # self.rng.choice(_SENTENCES_C), inlined
            bits = self.rng.getrandbits
            i = bits(_SENTENCES_K)
            while i >= _SENTENCES_N:
                i = bits(_SENTENCES_K)
            return self._fill(_SENTENCES_C[i])
        return self._fill(self.rng.choice(_SENTENCES_C))

    def paragraph(self, lo: int, hi: int) -> str:
        """Whole sentences, total length in [lo, hi] (hi >= lo + 130)."""
        target = self.rng.randint(lo, hi)
        parts: list[str] = []
        length = -1
        for _ in range(200):
            s = self.sentence()
            if length + 1 + len(s) > hi:
                if length >= lo:
                    break
                continue
            parts.append(s)
            length += 1 + len(s)
            if length >= target:
                break
        return " ".join(parts)

    def instruction(self, info: PromptInfo) -> str:
        text = self._fill(self.rng.choice(_INSTRUCTIONS_C))
        extras = []
        if info.category:
            extras.append(f"Treat it as a {_human(info.category)} task.")
        if info.technique:
            extras.append(f"Use the {_human(info.technique)} technique.")
        if extras and self.rng.random() < 0.8:
            text += " " + " ".join(extras)
        if len(text) < 120 and self.rng.random() < 0.5:
            text += " " + self.sentence()
        return text

    def scenario(self) -> str:
        return self.paragraph(80, 300)


_NOUN_PLURALS = [plural(w) for w in V.NOUNS]        # index i: plural of V.NOUNS[i]
_VERBS_3RD = [third_person(w) for w in V.VERBS]     # index i: V.VERBS[i] + s
_SLOT_WORDS = {"V": V.VERBS, "V3": _VERBS_3RD, "A": V.ADJECTIVES, "R": V.ADVERBS, "P": V.PREPOSITIONS,
               "D": DETERMINERS, "DP": PLURAL_DETERMINERS, "G": V.GENRES}
_NOUNS_N, _NOUNS_K = len(V.NOUNS), len(V.NOUNS).bit_length()
_SENTENCES_C = [_compile(t) for t in SENTENCES]
_SENTENCES_N, _SENTENCES_K = len(SENTENCES), len(SENTENCES).bit_length()
_INSTRUCTIONS_C = [_compile(t) for t in INSTRUCTIONS]
_COMPILED = dict(zip(SENTENCES + INSTRUCTIONS, _SENTENCES_C + _INSTRUCTIONS_C))
_FAST_DRAW = _draw_index_ok()


# ---------------------------------------------------------------- records
def _score(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 1)


def generate(info: PromptInfo, rng: random.Random, main_len: tuple = MAIN_LEN) -> dict:
    """One clean record of info.schema; its main texts (output, chosen, ...) `main_len` characters."""
    MAIN_LEN = main_len
    g = TextGen(rng, info)
    schema = info.schema
    if schema == "instruction_v1":
        return {
            "instruction": g.instruction(info),
            "input": g.scenario(),
            "output": g.paragraph(*MAIN_LEN),
        }
    if schema == "preference_v1":
        chosen_score = _score(rng, 7.0, 10.0)
        rejected_score = _score(rng, 1.0, 5.0)
        return {
            "prompt": g.instruction(info),
            "chosen": g.paragraph(*MAIN_LEN),
            "rejected": g.paragraph(*MAIN_LEN),
            "chosen_score": chosen_score,
            "rejected_score": rejected_score,
            "reasoning": (f"The chosen response is more {rng.choice(V.ADJECTIVES)} and "
                          f"{rng.choice(V.ADJECTIVES)} than the rejected one. " + g.paragraph(60, 260)),
        }
    if schema == "eval_v1":
        return {
            "input": g.instruction(info) + " " + g.scenario(),
            "ideal_output": g.paragraph(*MAIN_LEN),
            "metrics": rng.sample(V.METRICS, rng.randint(2, 4)),
        }
    if schema == "conflict_v1":
        drives = list(info.drives[:2])
        while len(drives) < 2:
            d = rng.choice(V.DEFAULT_DRIVES)
            if d not in drives:
                drives.append(d)
        preferred, losing = (drives if rng.random() < 0.5 else drives[::-1])
        return {
            "input": g.instruction(info) + " " + g.scenario(),
            "axis": info.axis or rng.choice(V.DEFAULT_AXES),
            "tension_type": rng.choice(V.TENSION_TYPES),
            "responses": [
                {"drive": drives[0], "output": g.paragraph(*MAIN_LEN), "viable": True},
                {"drive": drives[1], "output": g.paragraph(*MAIN_LEN), "viable": True},
            ],
            "resolution": {
                "preferred_drive": preferred,
                "losing_drive": losing,
                "confidence": round(rng.uniform(0.5, 0.95), 2),
                "override_condition": f"Prefer {losing} when " + g.sentence()[0].lower() + g.sentence()[1:],
                "reasoning": g.paragraph(100, 400),
            },
        }
    if schema == "judge":
        scores = [_score(rng, 7.0, 10.0) for _ in range(3)]
        overall = round(min(10.0, max(7.0, sum(scores) / 3 + rng.uniform(-0.3, 0.3))), 1)
        out = {"relevance": scores[0], "accuracy": scores[1], "completeness": scores[2],
               "overall": overall}
        if info.assess:
            out["assessments"] = {name: _score(rng, 1.0, 10.0) for name in info.assess}
        return out
    if schema == "invariants":
        return {"violations": []}
    if schema == "preference_scores":
        # The critic's scores of a pair: the first response well above the second.
        return {"chosen_score": _score(rng, 7.0, 10.0), "rejected_score": _score(rng, 1.0, 5.0),
                "reasoning": f"The chosen response is more {rng.choice(V.ADJECTIVES)}. " + g.sentence()}
    raise ValueError(f"unknown schema {schema!r}")


# ------------------------------------------------------ path helpers / edits
def get_path(record: dict, path: tuple):
    node = record
    for p in path:
        node = node[p]
    return node


def set_path(record: dict, path: tuple, value) -> None:
    node = record
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def cut_mid_sentence(text: str, rng: random.Random) -> str:
    """Cut text somewhere in its second half, never right after a period."""
    if len(text) < 8:
        return text[: max(1, len(text) // 2)]
    pos = rng.randint(len(text) // 2, len(text) - 3)
    cut = text[:pos].rstrip(" .,")
    # End on a partial word so it is plainly mid-sentence.
    return cut


def truncate_serialized(record: dict, schema: str, rng: random.Random) -> str:
    """The record's JSON text as a model would emit it when cut off by the
    token limit: it stops part-way through the main text (invalid JSON)."""
    paths = MAIN_TEXT.get(schema) or []
    if not paths:
        return cut_mid_sentence(json.dumps(record, ensure_ascii=False), rng).rstrip("}")
    rec = copy.deepcopy(record)
    marker = "@@CUT@@"
    cut = cut_mid_sentence(get_path(rec, paths[0]), rng)
    set_path(rec, paths[0], marker)
    text = json.dumps(rec, ensure_ascii=False)
    i = text.index(json.dumps(marker))
    return text[:i] + json.dumps(cut, ensure_ascii=False)[:-1]


PLANT_APPLIES = {
    "leakage": lambda s: bool(MAIN_TEXT[s]),
    "truncation": lambda s: bool(MAIN_TEXT[s]),
    "empty": lambda s: bool(MAIN_TEXT[s]),
    "long_second": lambda s: len(MAIN_TEXT[s]) > 1,
    "low_margin": lambda s: s in ("preference_v1", "preference_scores"),
    "low_judge": lambda s: s == "judge",
    "invariant_violation": lambda s: s == "invariants",
    "same_drive": lambda s: s == "conflict_v1",
    "no_override": lambda s: s == "conflict_v1",
}


def apply_plants(record: dict, info: PromptInfo, kinds: list[str], rng: random.Random) -> list[str]:
    """Plant content faults in place; returns the kinds that applied to this schema."""
    schema = info.schema
    applied = []
    for kind in kinds:
        if not PLANT_APPLIES[kind](schema):
            continue
        applied.append(kind)
        if kind == "leakage":
            path = MAIN_TEXT[schema][0]
            echo = "\n".join(info.directive_lines)
            set_path(record, path, echo + "\n" + get_path(record, path))
        elif kind == "truncation":
            path = MAIN_TEXT[schema][0]
            set_path(record, path, cut_mid_sentence(get_path(record, path), rng))
        elif kind == "empty":
            set_path(record, MAIN_TEXT[schema][0], "")
        elif kind == "long_second":
            path = MAIN_TEXT[schema][1]
            text = get_path(record, path)
            g = TextGen(rng, info)
            while len(text.split()) < 600:
                text += " " + g.sentence()
            set_path(record, path, text)
        elif kind == "low_margin":
            chosen = _score(rng, 5.5, 8.0)
            record["chosen_score"] = chosen
            record["rejected_score"] = round(max(1.0, chosen - rng.choice([0.0, 0.5, 1.0, 1.5])), 1)
        elif kind == "low_judge":
            for k in ("relevance", "accuracy", "completeness"):
                record[k] = _score(rng, 2.0, 6.5)
            record["overall"] = _score(rng, 1.0, 5.5)
        elif kind == "same_drive":
            record["responses"][1]["drive"] = record["responses"][0]["drive"]
        elif kind == "no_override":
            record["resolution"]["override_condition"] = ""
        elif kind == "invariant_violation":
            g = TextGen(rng, info)
            record["violations"] = [{"rule_index": 0,
                                     "explanation": "The record breaks rule 0. " + g.sentence()}]
    return applied


_WORD = re.compile(r"[a-z]{4,}")


def _swap_one_word(text: str, rng: random.Random) -> str:
    words = list(_WORD.finditer(text))
    if not words:
        return text
    m = rng.choice(words)
    new = m.group(0)
    while new == m.group(0):
        new = rng.choice(V.NOUNS)
    return text[: m.start()] + new + text[m.end():]


def copy_record(record):
    """A copy of a JSON-like record (dicts, lists, immutable leaves): copy.deepcopy without its
    bookkeeping."""
    if type(record) is dict:
        return {k: copy_record(v) for k, v in record.items()}
    if type(record) is list:
        return [copy_record(v) for v in record]
    return record


def near_duplicate(record: dict, schema: str, rng: random.Random) -> dict:
    """A copy with a couple of words changed (one in the prompt field, one in
    the main text)."""
    dup = copy.deepcopy(record)
    paths = [p for p in (PROMPT_FIELD.get(schema),) if p] + MAIN_TEXT[schema][:1]
    for path in paths:
        set_path(dup, path, _swap_one_word(get_path(dup, path), rng))
    return dup


def supports_near_dup(schema: str) -> bool:
    return bool(MAIN_TEXT[schema])


# ------------------------------------------------------------- utilities
def trigrams(text: str) -> set[str]:
    return {text[i:i + 3] for i in range(len(text) - 2)}


def trigram_jaccard(a: str, b: str) -> float:
    ta, tb = trigrams(a), trigrams(b)
    if not ta and not tb:
        return 1.0
    return len(ta & tb) / len(ta | tb)


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / 4))
