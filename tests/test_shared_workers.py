"""`--workers N`: without a shared state the admin API's writes answer 409 (they would reach one
worker of N) and `GET /_mock/settings` says `"shared": false`, while reads, model requests and the
file keep working; with `--state redis://…` writes are accepted. And the write guard itself, in
process: every route that changes something refuses, before doing anything, while the state says so.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.shared import ErrorObject

from mockllm_tui.admin.writes import READS, SAFE_METHODS
from mockllm_tui.core.shared_state import LocalState, StateMode
from mockllm_tui.rules import load_initial
from tests.conftest import serving
from tests.redis_server import RedisServer
from tests.test_shared_state import serve

RESPONSES = """\
# the workers' file
rules:
  - name: weather
    match: {contains: weather}
    reply: "Sunny."
scenarios:
  - name: checkout
    steps:
      - match: {contains: cart}
        reply: "Your cart."
responses:
  "hello": "Hello from a worker."
  "default": "This is a mock response from mockllm-tui."
"""
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
FILE_WAIT_S = 30.0


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Workers:
    """Headless workers: the parent process and their root URL."""

    proc: subprocess.Popen[str]
    root: str


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Three headless workers with no shared state, serving tmp_path/responses.yml."""
    (tmp_path / "responses.yml").write_text(RESPONSES)
    proc, root = serve("--workers", "3", "--responses", "responses.yml", cwd=tmp_path)
    try:
        yield Workers(proc, root)
    finally:
        stop(proc)


def error_of(response: httpx.Response) -> ErrorObject:
    """The admin error, validated strictly as the openai SDK reads it."""
    return ErrorObject.model_validate(response.json()["error"])


def ask(root: str, prompt: str) -> str:
    client = openai.OpenAI(base_url=root + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    try:
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
        return str(reply.choices[0].message.content)
    finally:
        client.close()


#: (method, path, JSON body) of every admin write, and what each changes.
WRITES: list[tuple[str, str, Any]] = [
    ("PATCH", "/_mock/settings", {"latency_ms": 5}),
    ("PATCH", "/_mock/settings?session=s1", {"latency_ms": 5}),
    ("DELETE", "/_mock/settings", None),
    ("DELETE", "/_mock/settings?session=s1", None),
    ("POST", "/_mock/settings/save", None),
    ("POST", "/_mock/fail-next", {"count": 1}),
    ("POST", "/_mock/fail-next?session=s1", {"count": 1}),
    ("POST", "/_mock/rules", {"match": {"contains": "ping"}, "reply": "pong"}),
    ("POST", "/_mock/rules?session=s1", {"match": {"contains": "ping"}, "reply": "pong"}),
    ("POST", "/_mock/rules?persist=false", {"match": {"contains": "ping"}, "reply": "pong"}),
    ("PUT", "/_mock/rules/weather", {"match": {"contains": "weather"}, "reply": "Rain."}),
    ("DELETE", "/_mock/rules/weather", None),
    ("DELETE", "/_mock/rules/%231?session=s1", None),
    ("POST", "/_mock/rules/reorder", {"id": "weather", "index": 1}),
    ("POST", "/_mock/rules/from-request", {"request": 1}),
    ("POST", "/_mock/reload", None),
    ("POST", "/_mock/scenarios/checkout/reset", None),
    ("DELETE", "/_mock/journal", None),
]


def test_workers_without_a_shared_state_refuse_writes_and_keep_serving(workers: Workers, tmp_path: Path) -> None:
    root = workers.root
    assert ask(root, "hello") == "Hello from a worker."
    with httpx.Client(base_url=root, timeout=30) as http:
        settings = http.get("/_mock/settings").json()
        assert settings["shared"] is False
        before = settings["effective"]
        rules = [rule["id"] for rule in http.get("/_mock/rules").json()["data"]]
        assert rules[0] == "weather"
        for method, path, body in WRITES:
            answer = http.request(method, path, json=body)
            assert answer.status_code == 409, (method, path, answer.text)
            message = error_of(answer).message
            assert "--state redis://" in message and "edit the responses file" in message, message
            assert "every worker" in message
        # nothing changed anywhere: the knobs, the rules, the file
        for _ in range(6):  # several connections: whichever workers answer
            assert http.get("/_mock/settings").json()["effective"] == before
            assert [rule["id"] for rule in http.get("/_mock/rules").json()["data"]] == rules
        assert (tmp_path / "responses.yml").read_text() == RESPONSES
        # reads answer as before
        assert http.get("/_mock/journal").status_code == 200
        assert http.get("/_mock/rules/file").text == RESPONSES
        tried = http.post("/_mock/try", json={"prompt": "what's the weather"})
        assert tried.status_code == 200 and tried.json()["rule"] == "weather"
        assert http.get("/health").json() == {"status": "ok", "state": "memory"}
    for _ in range(6):
        assert ask(root, "weather today?") == "Sunny."
    stop(workers.proc)
    assert workers.proc.stderr is not None
    notes = [line for line in workers.proc.stderr.read().splitlines() if line.startswith("note:")]
    assert notes == [
        "note: 3 workers and no shared state: each keeps its own journal and counters, and the admin API refuses "
        "changes (409); start with --state redis://HOST:PORT to share them, or edit the responses file, which "
        "every worker watches"
    ]


def test_workers_without_a_shared_state_follow_an_edit_of_the_file(workers: Workers, tmp_path: Path) -> None:
    """What the 409 tells to do instead: every worker serves the edited file."""
    root = workers.root
    assert ask(root, "hello") == "Hello from a worker."
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES.replace("Hello from a worker.", "Hello from the edited file."))
    streak = 0  # a run of answers long enough that every worker gave some of them
    end = time.monotonic() + FILE_WAIT_S
    with httpx.Client(base_url=root, timeout=30) as http:
        while streak < 30:
            assert time.monotonic() < end, "the workers did not all serve the edited file in time"
            # a new connection each time, so the kernel spreads them over the workers
            answer = httpx.post(root + "/v1/chat/completions", json=BODY, headers={"connection": "close"})
            text = answer.json()["choices"][0]["message"]["content"]
            streak = streak + 1 if text == "Hello from the edited file." else 0
        assert http.get("/_mock/settings").json()["shared"] is False


def test_workers_with_redis_accept_writes(tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "responses.yml").write_text(RESPONSES)
    proc, root = serve("--workers", "3", "--state", redis_server.url, "--responses", "responses.yml", cwd=tmp_path)
    try:
        with httpx.Client(base_url=root, timeout=30) as http:
            for _ in range(6):  # whichever workers answer
                assert http.get("/_mock/settings").json()["shared"] is True
            assert http.patch("/_mock/settings", json={"latency_ms": 1}).status_code == 200
            assert http.post("/_mock/fail-next", json={"count": 0}).status_code == 200
            added = http.post("/_mock/rules", json={"match": {"contains": "ping"}, "reply": "pong"})
            assert added.status_code == 201, added.text
            assert http.get("/health").json() == {"status": "ok", "state": "redis"}
        assert ask(root, "hello") == "Hello from a worker."
    finally:
        stop(proc)
    assert proc.stderr is not None and "note:" not in proc.stderr.read()


# -- the guard, in process ---------------------------------------------------------------------------


class FlippingState(LocalState):
    """A state whose mode a test sets (`now`), refusing writes with a 503 while degraded."""

    def __init__(self, mode: StateMode = "redis") -> None:
        super().__init__("test")
        self.now: StateMode = mode

    @property
    def mode(self) -> StateMode:
        return self.now

    def write_refusal(self) -> tuple[int, str] | None:
        return (503, "the shared state is lost (test)") if self.now == "degraded" else None


@pytest.mark.parametrize(("shared", "status"), [(False, 409), (True, 503)], ids=["unshared", "degraded"])
async def test_every_write_is_refused_before_it_does_anything(tmp_path: Path, shared: bool, status: int) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    from mockllm_tui.core.store import Store

    state: LocalState = LocalState("test", shared=False) if not shared else FlippingState("degraded")
    store = Store(state=state)
    load_initial(store, path)
    async with serving(store) as live:
        client = openai.AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)
        assert (await client.chat.completions.create(**BODY)).choices[0].message.content == "Hello from a worker."
        await client.close()
        async with httpx.AsyncClient(base_url=live.root, timeout=30) as http:
            assert (await http.get("/_mock/settings")).json()["shared"] is False
            for method, url, body in WRITES:
                answer = await http.request(method, url, json=body)
                assert answer.status_code == status, (method, url, answer.text)
                assert error_of(answer).message == state.write_refusal()[1]  # type: ignore[index]
            assert (await http.post("/_mock/try", json={"prompt": "hello"})).status_code == 200
            assert (await http.get("/_mock/rules")).status_code == 200
    assert path.read_text() == RESPONSES
    assert store.knob_layer("live") == {} and store.fail_next[0] == 0
    assert [e.path for e in store.journal()] == ["/v1/chat/completions"]
    assert [rule.label for rule in store.rules][:1] == ["weather"]  # type: ignore[attr-defined]


async def test_writes_pass_when_the_state_allows_them_again(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    from mockllm_tui.core.store import Store

    state = FlippingState("degraded")
    store = Store(state=state)
    load_initial(store, path)
    async with serving(store) as live, httpx.AsyncClient(base_url=live.root, timeout=30) as http:
        assert (await http.patch("/_mock/settings", json={"latency_ms": 5})).status_code == 503
        state.now = "redis"
        settings = await http.get("/_mock/settings")
        assert settings.json()["shared"] is True
        answer = await http.patch("/_mock/settings", json={"latency_ms": 5})
        assert answer.status_code == 200 and answer.json()["shared"] is True
        assert store.knobs.latency_ms == 5


async def test_every_admin_route_that_changes_something_is_guarded(tmp_path: Path) -> None:
    """Every route the API documents under /_mock/ (a route added later too): each write refuses,
    each read answers."""
    from mockllm_tui.core.store import Store

    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    store = Store(state=LocalState("test", shared=False))
    load_initial(store, path)
    filled = {"{rule}": "weather", "{name}": "checkout"}
    async with serving(store) as live, httpx.AsyncClient(base_url=live.root, timeout=30) as http:
        spec = (await http.get("/_mock/openapi.json")).json()
        refused, answered = set(), set()
        for template, operations in spec["paths"].items():
            if not template.startswith("/_mock/") or template == "/_mock/events":
                continue
            url = template
            for name, value in filled.items():
                url = url.replace(name, value)
            for method in operations:
                answer = await http.request(method.upper(), url, json={})
                if answer.status_code == 409:
                    assert "--state redis://" in error_of(answer).message
                    refused.add((method.upper(), template))
                else:
                    answered.add((method.upper(), template))
    writes = {(m, p) for m, p in refused | answered if m not in SAFE_METHODS and (m, p) not in READS}
    assert refused == writes, answered & writes
    assert {("PATCH", "/_mock/settings"), ("POST", "/_mock/fail-next"), ("DELETE", "/_mock/journal")} <= refused
    assert ("POST", "/_mock/try") in answered and ("GET", "/_mock/settings") in answered
    assert path.read_text() == RESPONSES
