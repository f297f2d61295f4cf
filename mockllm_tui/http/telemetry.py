"""OpenTelemetry traces (the optional extra `[otel]`): one server span per model request, named
`{operation} {model}`, with the GenAI semantic conventions' attributes and an event for the first
token. Spans are made when a request ends, from its journal entry, so serving never waits on them.
"""

from __future__ import annotations

import os
from typing import Any

from mockllm_tui.core.store import JournalEntry, Store

OTLP_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
MISSING = "--otel needs the OpenTelemetry packages: pip install 'mockllm-tui[otel]'"


def wanted(flag: bool) -> bool:
    """Whether to trace: `--otel`, or an OTLP endpoint in the environment."""
    return flag or bool(os.environ.get(OTLP_ENV))


def otlp_tracer_provider() -> Any:
    """A tracer provider exporting over OTLP/HTTP in batches (configured by the OTEL_* variables)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SystemExit(f"error: {MISSING}") from None
    provider = TracerProvider(resource=Resource.create({"service.name": "mockllm-tui"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class Telemetry:
    """Turns each finished model request into a span."""

    def __init__(self, store: Store, tracer_provider: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._kind, self._status, self._code = SpanKind.SERVER, Status, StatusCode
        self.tracer = tracer_provider.get_tracer("mockllm_tui")
        store.add_finish_hook(self._finished)

    def _finished(self, entry: JournalEntry) -> None:
        if not entry.operation:
            return
        start = int(entry.time * 1e9)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": entry.operation,
            "gen_ai.provider.name": entry.system or entry.provider,
            "gen_ai.request.model": entry.model,
            "http.response.status_code": entry.status,
        }
        if entry.response_id:
            attributes["gen_ai.response.id"] = entry.response_id
            attributes["gen_ai.response.finish_reasons"] = [entry.finish_reason]
            attributes["gen_ai.usage.input_tokens"] = entry.input_tokens
            attributes["gen_ai.usage.output_tokens"] = entry.output_tokens
        span = self.tracer.start_span(
            f"{entry.operation} {entry.model}", kind=self._kind, start_time=start, attributes=attributes
        )
        if entry.first_chunk_at is not None:
            span.add_event("gen_ai.first_token", timestamp=start + int((entry.first_chunk_at - entry.started) * 1e9))
        if entry.status >= 400:
            span.set_attribute("error.type", str(entry.status))
            span.set_status(self._status(self._code.ERROR))
        span.end(end_time=start + int(entry.duration_ms * 1e6))
