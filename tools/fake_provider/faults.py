"""Fault configuration and the per-request fault decision.

A FaultConfig holds every knob that can be set on the command line
(--rate-429 0.3) and changed at runtime (POST /config {"rate_429": 0.3}).

decide() turns (config, a request key) into a Decision.  The key is built by
the server from --seed and a request counter, so a given run is reproducible:
the n-th request always gets the same decision.  Every request draws
independently; a client retry is simply another request with a new counter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field

# Transport / envelope level faults, in the order their rates are stacked on
# a single uniform draw (so their shares are exact and mutually exclusive).
# The sum of the rates is capped at 1.
TRANSPORT_FAULTS = (
    "rate_400",
    "rate_429",
    "rate_500",
    "rate_529",
    "rate_hang",
    "rate_reset",
    "rate_malformed",
    "rate_truncate",
    "rate_refusal",
)

# Content level faults planted into otherwise well-formed 200 responses, for
# the quality system to catch.  Each kind is drawn independently.
PLANT_KINDS = (
    "leakage",              # main text echoes the prompt's "SCHEMA:" lines
    "truncation",           # main text cut mid-sentence, finish_reason stop
    "low_margin",           # preference scores differ by < 2
    "low_judge",            # judge overall < 6
    "invariant_violation",  # invariants returns a violation
    "empty",                # main output field is ""
    "long_second",          # the second response (preference rejected, conflict responses[1]) runs to 600+ words
    "same_drive",           # conflict: both responses argue the first drive
    "no_override",          # conflict: the resolution's override_condition is ""
)

FAULT_KEYS = ("request", "prompt")


def rng_for(*parts: object) -> random.Random:
    """A random.Random seeded from a stable hash of the parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class FaultConfig:
    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    max_concurrency: int = 0          # 0 = unlimited
    rpm_limit: int = 0                # requests per window; 0 = unlimited
    rpm_window: float = 60.0          # seconds of the rate-limit window (reported in the headers)
    retry_after: float = 1.0          # seconds, sent with every 429
    retry_after_format: str = "seconds"  # "seconds" (and retry-after-ms) or "http-date" (an HTTP date alone)
    hang_seconds: float = 30.0
    rate_400: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_529: float = 0.0
    rate_hang: float = 0.0
    rate_reset: float = 0.0
    rate_malformed: float = 0.0
    rate_truncate: float = 0.0
    rate_refusal: float = 0.0
    near_dup_rate: float = 0.0
    answer_chars: int = 0             # main answer text about this long (0: 200 to 800 characters)
    batch_delay_ms: float = 0.0       # a batch reports itself in progress this long after it is made
    batch_expire_rate: float = 0.0    # share of batches that expire (their second half unanswered)
    batch_error_rate: float = 0.0     # share of a batch's requests that fail with a 500 of their own
    vary: bool = True
    fault_key: str = "request"        # "request": global counter; "prompt": per-prompt counter
    plant: dict = field(default_factory=dict)   # kind -> rate
    require_key: str | None = None

    # ------------------------------------------------------------------ update
    def update(self, changes: dict) -> None:
        """Apply a dict of changes (the POST /config body).

        Validates everything first, so a bad request changes nothing.
        Raises ValueError with a readable message.
        """
        if not isinstance(changes, dict):
            raise ValueError("config body must be a JSON object")
        staged = dataclasses.replace(self, plant=dict(self.plant))
        names = {f.name: f for f in dataclasses.fields(self)}
        for key, value in changes.items():
            key = key.replace("-", "_")
            if key not in names:
                raise ValueError(f"unknown config key {key!r}")
            setattr(staged, key, _coerce(key, value, self.plant))
        staged.validate()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(staged, f.name))

    def validate(self) -> None:
        for name in TRANSPORT_FAULTS + ("near_dup_rate", "batch_expire_rate", "batch_error_rate"):
            _check_rate(name, getattr(self, name))
        for kind, rate in self.plant.items():
            if kind not in PLANT_KINDS:
                raise ValueError(f"unknown plant kind {kind!r}; expected one of {', '.join(PLANT_KINDS)}")
            _check_rate(f"plant {kind}", rate)
        if self.rpm_window <= 0:
            raise ValueError("rpm_window must be > 0")
        for name in ("latency_ms", "jitter_ms", "retry_after", "hang_seconds", "batch_delay_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_concurrency", "rpm_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0 <= self.answer_chars <= 100_000:
            raise ValueError("answer_chars must be between 0 and 100000")
        if self.retry_after_format not in ("seconds", "http-date"):
            raise ValueError("retry_after_format must be seconds or http-date")
        if self.fault_key not in FAULT_KEYS:
            raise ValueError(f"fault_key must be one of {FAULT_KEYS}")

    def main_len(self) -> tuple:
        """The range of a record's main text (output, chosen, ...) in characters."""
        if self.answer_chars <= 0:
            return (200, 800)
        return (max(1, self.answer_chars - 150), self.answer_chars + 150)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["require_key"] = None if self.require_key is None else "***"
        return d


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def parse_plant(spec: str) -> tuple[str, float]:
    """'leakage:0.2' -> ('leakage', 0.2)."""
    kind, sep, rate = spec.partition(":")
    if not sep:
        raise ValueError(f"--plant expects KIND:RATE, got {spec!r}")
    try:
        value = float(rate)
    except ValueError:
        raise ValueError(f"--plant rate must be a number, got {rate!r}") from None
    kind = kind.strip()
    if kind not in PLANT_KINDS:
        raise ValueError(f"unknown plant kind {kind!r}; expected one of {', '.join(PLANT_KINDS)}")
    _check_rate(f"plant {kind}", value)
    return kind, value


def _coerce(key: str, value, current_plant: dict):
    """Convert a JSON value to the field's type."""
    if key == "plant":
        # Accept {"leakage": 0.2}, ["leakage:0.2", ...] or "leakage:0.2".
        # The new value replaces the whole plant table.
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return dict(parse_plant(str(v)) for v in value)
        if isinstance(value, dict):
            return {str(k): float(v) for k, v in value.items()}
        raise ValueError("plant must be an object, a list of 'KIND:RATE' or a string")
    if key == "vary":
        if not isinstance(value, bool):
            raise ValueError("vary must be true or false")
        return value
    if key in ("require_key", "fault_key"):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string or null")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number")
    if key in ("seed", "max_concurrency", "rpm_limit"):
        if int(value) != value:
            raise ValueError(f"{key} must be an integer")
        return int(value)
    return float(value)


# ---------------------------------------------------------------- decisions
class Decision:
    """One request's draws.  `rng` (for sub-choices: malformed variant, cut point, plants, ...)
    is made on first use: most requests never need it."""

    __slots__ = ("fault", "plants", "near_dup", "delay_s", "_rng", "_rng_parts")

    def __init__(self, fault: str | None, plants: list[str], near_dup: bool, delay_s: float,
                 rng_parts: tuple = ()):
        self.fault = fault            # one of TRANSPORT_FAULTS without "rate_", or None
        self.plants = plants          # PLANT_KINDS chosen for this request
        self.near_dup = near_dup
        self.delay_s = delay_s        # latency + jitter to wait before answering
        self._rng = None
        self._rng_parts = rng_parts

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = rng_for(*self._rng_parts)
        return self._rng


def decide(cfg: FaultConfig, key: str) -> Decision:
    """Draw this request's faults.  Pure function of (cfg, key)."""
    rng = rng_for(cfg.seed, "fault", key)
    u = rng.random()
    fault = None
    acc = 0.0
    for name in TRANSPORT_FAULTS:
        acc += getattr(cfg, name)
        if u < acc:
            fault = name[len("rate_"):]
            break
    # Always draw the same number of values, whatever the config, so that
    # changing one rate does not reshuffle unrelated decisions.
    plants = []
    for kind in PLANT_KINDS:
        if rng.random() < cfg.plant.get(kind, 0.0):
            plants.append(kind)
    near_dup = rng.random() < cfg.near_dup_rate
    jitter = rng.random() * cfg.jitter_ms
    delay_s = (cfg.latency_ms + jitter) / 1000.0
    return Decision(fault=fault, plants=plants, near_dup=near_dup, delay_s=delay_s,
                    rng_parts=(cfg.seed, "sub", key))
