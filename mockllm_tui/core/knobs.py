"""The live knobs: latency, streaming speed, error injection, rate limits, auth.

Knobs come in layers (default < CLI/env < file `settings:` < live change); the store keeps the
layers and the merged result. Per-rule and per-request values are applied per request (faults.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

LatencyDistribution = Literal["uniform", "lognormal"]
ErrorMode = Literal["before", "mid_stream", "disconnect", "timeout"]
ChunkMode = Literal["char", "word", "token"]

ERROR_MODES: tuple[str, ...] = ("before", "mid_stream", "disconnect", "timeout")
CHUNK_MODES: tuple[str, ...] = ("char", "word", "token")
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "lognormal")


@dataclass(frozen=True, slots=True)
class Knobs:
    """One full set of knob values. Frozen: a change makes a new one (readers never see a half-change)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_distribution: LatencyDistribution = "uniform"
    stream_speed: float = 0.0
    stream_chunk: ChunkMode = "word"
    stream_jitter: float = 0.0
    error_rate: float = 0.0
    error_status: tuple[int, ...] = (500,)
    error_mode: ErrorMode = "before"
    rate_limit_rpm: int = 0
    rate_limit_tpm: int = 0
    api_key: str | None = field(default=None, repr=False)
    seed: int | None = None
    timeout_cap_s: float = 60.0
    #: The context window (tokens) of models that have none of their own; 0: no limit.
    context_window: int = 0
    #: Save each reply proxied from an upstream as a rule (`--record`).
    record: bool = False
    #: What an audio turn of a realtime session says to the rules (the mock does not transcribe).
    audio_transcript: str = "(audio)"
    #: Seconds a realtime session may stay silent before the server closes it.
    realtime_idle_s: float = 600.0

    def with_changes(self, **changes: Any) -> Knobs:
        """A copy with these fields changed (validated)."""
        return replace(self, **validate_knob_values(changes))

    def public(self) -> dict[str, Any]:
        """The values as plain data, with the API key redacted."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["error_status"] = list(self.error_status)
        out["api_key"] = "***" if self.api_key else None
        return out


KNOB_NAMES: frozenset[str] = frozenset(f.name for f in fields(Knobs))


class KnobError(ValueError):
    """A knob value that is out of range or of the wrong type."""


def _number(name: str, value: Any, *, lo: float = 0.0, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KnobError(f"{name}: expected a number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise KnobError(f"{name}: must be {bound}, got {value!r}")
    return float(value)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise KnobError(f"{name}: must be one of {', '.join(options)}, got {value!r}")
    return str(value)


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise KnobError(f"error_status: expected an HTTP error status (400-599), got {value!r}")
    return value


def validate_knob_values(changes: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise knob values; raise KnobError naming the knob on a bad one."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in KNOB_NAMES:
            raise KnobError(f"unknown setting {name!r} (known: {', '.join(sorted(KNOB_NAMES))})")
        if name in ("latency_ms", "jitter_ms", "stream_speed", "stream_jitter", "timeout_cap_s", "realtime_idle_s"):
            out[name] = _number(name, value)
        elif name == "error_rate":
            out[name] = _number(name, value, hi=1.0)
        elif name in ("rate_limit_rpm", "rate_limit_tpm", "context_window"):
            out[name] = int(_number(name, value))
        elif name == "latency_distribution":
            out[name] = _choice(name, value, DISTRIBUTIONS)
        elif name == "stream_chunk":
            out[name] = _choice(name, value, CHUNK_MODES)
        elif name == "error_mode":
            out[name] = _choice(name, value, ERROR_MODES)
        elif name == "error_status":
            statuses = value if isinstance(value, list | tuple) else [value]
            if not statuses:
                raise KnobError("error_status: give at least one status")
            out[name] = tuple(_status(s) for s in statuses)
        elif name == "api_key":
            if value is not None and not isinstance(value, str):
                raise KnobError("api_key: expected a string")
            out[name] = value or None
        elif name == "audio_transcript":
            if not isinstance(value, str):
                raise KnobError(f"audio_transcript: expected a string, got {value!r}")
            out[name] = value
        elif name == "record":
            if not isinstance(value, bool):
                raise KnobError(f"record: expected true or false, got {value!r}")
            out[name] = value
        elif name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise KnobError(f"seed: expected an integer, got {value!r}")
            out[name] = value
    return out
