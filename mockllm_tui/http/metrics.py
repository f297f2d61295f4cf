"""`GET /metrics`: Prometheus text made with prometheus-client, in our names and in vLLM's.

Recording costs the request path one list append: each finished model request is kept as its
journal entry, and the figures are worked out later, when `/metrics` is scraped or every
FLUSH_INTERVAL_S (so `--workers` processes, which share figures through prometheus-client's
multiprocess files, stay current). prometheus-client takes a quarter of a second to import, so it
loads on a worker thread after start-up; entries wait for it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from mockllm_tui.core.store import JournalEntry, Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

FLUSH_AT = 512
FLUSH_INTERVAL_S = 0.5
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
GAPS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


class Families:
    """The metric objects, ours and vLLM's (gauges sum over live `--workers` processes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode="livesum")

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        where, model = ("provider", "endpoint"), ("model_name",)
        self.requests = counter("mockllm_requests", "Model requests answered.", (*where, "status", "rule"))
        self.duration = histogram("mockllm_request_duration_seconds", "Time to the last byte.", where, LATENCY)
        self.ttft = histogram("mockllm_time_to_first_token_seconds", "Time to the first chunk.", where, LATENCY)
        self.stream_tokens = counter("mockllm_stream_tokens", "Output tokens sent in streams.", where)
        self.injected = counter("mockllm_injected_errors", "Errors injected by faults.", ("status", "mode"))
        self.in_flight = gauge("mockllm_requests_in_flight", "Requests being answered.")
        self.streams_open = gauge("mockllm_streams_open", "Streams being sent.")
        self.reloads = counter("mockllm_rules_reloads", "Rule sets made live (reloads and edits).")
        self.running = gauge("vllm:num_requests_running", "Requests answering.", model)
        self.waiting = gauge("vllm:num_requests_waiting", "Requests not answering yet.", model)
        self.vllm_ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.", model, LATENCY)
        self.vllm_itl = histogram("vllm:inter_token_latency_seconds", "Time between chunks.", model, GAPS)
        self.vllm_e2e = histogram("vllm:e2e_request_latency_seconds", "End-to-end latency.", model, LATENCY)
        self.prompt_tokens = counter("vllm:prompt_tokens", "Prompt tokens.", model)
        self.generation_tokens = counter("vllm:generation_tokens", "Generated tokens.", model)
        self.success = counter("vllm:request_success", "Requests answered.", (*model, "finished_reason"))


class Metrics:
    """The store's finished model requests, as Prometheus metrics."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[JournalEntry] = []
        self._families: Families | None = None
        self._registry: CollectorRegistry | None = None
        self._load_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._reloads_seen = store.rule_sets_loaded
        store.add_finish_hook(self._finished)

    def _finished(self, entry: JournalEntry) -> None:
        if not entry.endpoint:
            return
        self.pending.append(entry)
        if self._families is not None and (
            len(self.pending) >= FLUSH_AT or time.monotonic() - self._last_flush > FLUSH_INTERVAL_S
        ):
            self.flush()

    def load(self) -> None:
        """Import prometheus-client and make the metric objects (slow: call it off the event loop)."""
        with self._load_lock:
            if self._families is not None:
                return
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=True)
            self._families = Families(self._registry)

    async def run(self) -> None:
        """Flush every FLUSH_INTERVAL_S until cancelled (so idle `--workers` processes stay current)."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def flush(self) -> None:
        """Turn the requests finished since the last flush into metrics."""
        families = self._families
        if families is None:
            return
        pending, self.pending = self.pending, []
        self._last_flush = time.monotonic()
        tally = Tally()
        for entry in pending:
            tally.record(families, entry)
        tally.apply()
        store = self.store
        families.reloads.inc(store.rule_sets_loaded - self._reloads_seen)
        self._reloads_seen = store.rule_sets_loaded
        families.in_flight.set(store.counters.in_flight)
        families.streams_open.set(store.counters.streams_open)
        running: dict[str, int] = {}
        waiting: dict[str, int] = {}
        for entry in store.open_requests():
            if entry.endpoint:
                into = running if entry.stream_started or entry.status else waiting
                into[entry.model] = into.get(entry.model, 0) + 1
        for family, counts in ((families.running, running), (families.waiting, waiting)):
            family.clear()
            for name, n in counts.items():
                family.labels(name).set(n)

    def render(self) -> bytes:
        """The Prometheus text: this process's figures, or every worker's under `--workers`."""
        self.load()
        self.flush()
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        assert self._registry is not None
        return bytes(generate_latest(self._registry))


class Tally:
    """A batch of requests summed per metric and label set, then added to the metrics in one go:
    a counter gets one `inc` per label set, a histogram one add per bucket (not one `observe` per
    request, which costs several microseconds each)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, tuple[str, ...]], float] = {}
        self.histograms: dict[tuple[Any, tuple[str, ...]], list[float]] = {}

    def add(self, family: Any, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Count `amount` for a counter's label set."""
        key = (family, labels)
        self.counts[key] = self.counts.get(key, 0.0) + amount

    def observe(self, family: Any, labels: tuple[str, ...], value: float, times: int = 1) -> None:
        """Observe `value` (`times` times) in a histogram's label set."""
        key = (family, labels)
        bounds = family._upper_bounds  # ends with +Inf
        row = self.histograms.get(key)
        if row is None:
            row = self.histograms[key] = [0.0] * (len(bounds) + 1)
        row[bisect_left(bounds, value)] += times
        row[-1] += value * times

    def record(self, families: Families, entry: JournalEntry) -> None:
        """Tally one finished model request."""
        where, model = (entry.provider, entry.endpoint), (entry.model or "unknown",)
        ok = entry.status < 400
        self.add(families.requests, (*where, str(entry.status), entry.rule or ""))
        seconds = entry.duration_ms / 1000.0
        self.observe(families.duration, where, seconds)
        self.observe(families.vllm_e2e, model, seconds)
        if entry.fault_status is not None:
            self.add(families.injected, (str(entry.fault_status), entry.fault_mode or ""))
        first = entry.first_chunk_at
        ttft = (first - entry.started) if first is not None else seconds
        if ok:
            self.observe(families.ttft, where, ttft)
            self.observe(families.vllm_ttft, model, ttft)
        if entry.input_tokens:
            self.add(families.prompt_tokens, model, entry.input_tokens)
        if entry.output_tokens and ok:
            self.add(families.generation_tokens, model, entry.output_tokens)
            if entry.stream:
                self.add(families.stream_tokens, where, entry.output_tokens)
        if ok and entry.response_id:
            self.add(families.success, (*model, entry.finish_reason or "stop"))
        gaps = len(entry.chunks) - 1
        if first is not None and gaps > 0:
            self.observe(families.vllm_itl, model, max(seconds - ttft, 0.0) / gaps, gaps)

    def apply(self) -> None:
        """Add the tally to the metrics."""
        for (family, labels), amount in self.counts.items():
            family.labels(*labels).inc(amount)
        for (family, labels), row in self.histograms.items():
            child = family.labels(*labels)
            # prometheus-client keeps one value per bucket (made cumulative when collected) and a sum.
            for i, n in enumerate(row[:-1]):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(row[-1])
