"""`/metrics` (ours and vLLM's names) and OpenTelemetry spans, against the real server and SDKs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from mockllm_tui.http.telemetry import Telemetry
from tests.conftest import Live
from tests.support import FixedReplies

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= set(ls))


async def scrape(live: Live) -> Samples:
    async with httpx.AsyncClient(base_url=live.root) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_count_what_was_sent_in_both_families(live: Live) -> None:
    live.store.set_rules(FixedReplies(text="one two three four"))
    live.store.set_knobs("live", {"api_key": "k"})  # /metrics stays open, like /health
    client = openai.AsyncOpenAI(base_url=live.openai_url, api_key="k", max_retries=0)
    messages = [{"role": "user", "content": "count me"}]
    for _ in range(3):
        plain = await client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert plain.usage is not None
    reply_tokens = plain.usage.completion_tokens
    stream = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)  # type: ignore[arg-type]
    chunks = [c async for c in stream]
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="gpt-4o", messages=messages, extra_headers={"x-mock-error": "529"}  # type: ignore[arg-type]
        )
    created = await client.responses.create(model="gpt-4o", input="keep me")
    await client.responses.retrieve(created.id)
    await client.close()
    found = await scrape(live)
    assert total(found, "mockllm_requests_total") == 7
    assert total(found, "mockllm_requests_total", endpoint="chat.completions", status="200", rule="default") == 4
    assert total(found, "mockllm_requests_total", status="529") == 1
    assert total(found, "mockllm_requests_total", endpoint="responses.retrieve") == 1  # a template, never the id
    assert not any(created.id in str(labels) for _, labels in found)
    assert total(found, "mockllm_injected_errors_total", status="529", mode="before") == 1
    assert total(found, "mockllm_request_duration_seconds_count", provider="openai") == 5
    assert total(found, "mockllm_stream_tokens_total") == reply_tokens and len(chunks) > 4
    assert total(found, "vllm:request_success_total", model_name="gpt-4o") == 5
    assert total(found, "vllm:e2e_request_latency_seconds_count") == 7
    responses_tokens = created.usage.output_tokens if created.usage else 0
    assert total(found, "vllm:generation_tokens_total", model_name="gpt-4o") == 4 * reply_tokens + responses_tokens
    assert total(found, "vllm:prompt_tokens_total") > 0
    assert total(found, "vllm:time_to_first_token_seconds_count") == 6
    assert total(found, "vllm:inter_token_latency_seconds_count") >= 3
    assert total(found, "mockllm_requests_in_flight") == 0 and total(found, "vllm:num_requests_running") == 0
    assert total(found, "mockllm_rules_reloads_total") >= 1
    assert [e.path for e in live.store.journal()].count("/metrics") == 0


async def test_spans_follow_the_genai_conventions(live: Live) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    Telemetry(live.store, provider)
    live.store.set_rules(FixedReplies(text="traced reply"))
    client = openai.AsyncOpenAI(base_url=live.openai_url, api_key="k", max_retries=0)
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    [c async for c in stream]
    await client.embeddings.create(model="text-embedding-3-small", input="vector")
    await client.close()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["chat gpt-4o-mini", "chat gpt-4o-mini", "embeddings text-embedding-3-small"]
    first = spans[0]
    assert first.attributes is not None
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert first.attributes["gen_ai.response.id"] == completion.id
    assert tuple(first.attributes["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]
    assert first.attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert first.attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert str(first.kind) == "SpanKind.SERVER"
    assert [e.name for e in spans[1].events] == ["gen_ai.first_token"]
    assert spans[1].start_time < spans[1].events[0].timestamp <= spans[1].end_time  # type: ignore[operator]


def test_workers_add_up_across_processes(tmp_path: Path) -> None:
    responses = tmp_path / "responses.yml"
    responses.write_text('responses:\n  "default": "from a worker"\n')
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--quiet", "--port", "0", "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--responses", str(responses)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        root = proc.stdout.readline().split("serving on ")[1].split()[0]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=root, timeout=30) as client:
            for _ in range(30):
                assert client.post("/v1/chat/completions", json=body).status_code == 200
            seen = 0.0
            for _ in range(100):  # each worker flushes its figures within half a second
                seen = total(samples(client.get("/metrics").text), "mockllm_requests_total")
                if seen == 30:
                    break
                client.get("/health")
            workers = {e["request_id"] for e in client.get("/_mock/journal").json()["data"]}
    finally:
        proc.terminate()
        proc.wait(15)
    assert seen == 30 and workers
