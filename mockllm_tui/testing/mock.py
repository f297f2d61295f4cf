"""`MockLLM`: what the `mockllm` fixture gives a test. A view over the session's server for one test."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mockllm_tui.core.knobs import ERROR_MODES, ErrorMode
from mockllm_tui.rules.model import RulesModel, clip
from mockllm_tui.testing.control import MockRequest
from mockllm_tui.testing.rules import read_rules, rule_entry
from mockllm_tui.testing.server import SessionServer

if TYPE_CHECKING:
    from mockllm_tui.testing.remote import RemoteServer

    Backend = SessionServer | RemoteServer

if TYPE_CHECKING:
    import anthropic
    import openai

DUMMY_OPENAI_KEY = "sk-mockllm-test"
DUMMY_ANTHROPIC_KEY = "sk-ant-mockllm-test"
#: How long `requests` waits for requests still being answered (a stream the client stopped reading).
SETTLE_S = 1.0
PREVIEW_CHARS = 60


class RuleHandle:
    """A rule the test added: its `name`, and `hits`, how many requests it answered."""

    def __init__(self, mock: MockLLM, index: int, name: str) -> None:
        self._mock = mock
        self._index = index
        self.name = name

    @property
    def hits(self) -> int:
        """How many requests this rule has answered during the test."""
        return self._mock._hits()[self._index]

    def __repr__(self) -> str:
        return f"RuleHandle(name={self.name!r}, hits={self.hits})"


class MockLLM:
    """The mock as one test sees it: its rules, knobs and requests. Reset before each test."""

    def __init__(self, server: Backend, rootdir: Path, *, base: RulesModel | None, strict: bool) -> None:
        self._server = server
        self._rootdir = rootdir
        self._rules: list[RuleHandle] = []
        self._clients: list[Any] = []
        self._final: tuple[list[MockRequest], list[int]] | None = None
        self._told = (0, 0)  # the failures and strict-mode misses already reported
        server.begin(base, strict)

    @property
    def session(self) -> str | None:
        """The test's session on a shared server (a uuid; None with the plugin's own server)."""
        return self._server.session

    @property
    def headers(self) -> dict[str, str]:
        """The headers that put a client in this test's session (for clients the fixture did not make)."""
        return self._server.headers() if self.session is not None else {}

    # -- where it is ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`"""
        return self._server.url

    @property
    def openai_base_url(self) -> str:
        """The `base_url` for the openai SDK (`url + "/v1"`)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The `base_url` for the anthropic SDK (`url`)."""
        return self.url

    # -- rules, failures and knobs ---------------------------------------------------------------

    def rule(
        self,
        *,
        exact: str | None = None,
        contains: str | None = None,
        regex: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        system: str | None = None,
        tool_result: str | dict[str, str] | None = None,
        turn: int | str | None = None,
        tools: str | list[str] | None = None,
        header: dict[str, str] | None = None,
        endpoint: str | None = None,
        file: str | None = None,
        duration: dict[str, float] | None = None,
        reply: str | Callable[[MockRequest], str] | None = None,
        replies: list[str] | None = None,
        tool_calls: list[dict[str, Any]] | Callable[[MockRequest], list[dict[str, Any]]] | None = None,
        error: dict[str, Any] | None = None,
        latency_ms: float | None = None,
        stream_speed: float | None = None,
        thinking: str | None = None,
        image: str | None = None,
        audio: str | None = None,
        moderation: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> RuleHandle:
        """Add a rule for this test only, tried before the base rules and after the test's earlier ones.

        The keywords are those of a rule in `responses.yml`; `tool_calls` is a list of
        `{"name": ..., "arguments": {...}}` and `error` is `{"status": ..., "message": ...}`;
        `duration` is `{"min": ..., "max": ...}` and `moderation` `{"flagged": [...], "scores": {...}}`.
        `reply` and `tool_calls` may be functions of the request (a MockRequest), called once per
        request the rule answers; they return the text, or the list of tool calls.
        """
        fields = dict(locals())  # the keywords, as rule_entry reads them
        del fields["self"]
        entry = rule_entry(len(self._rules) + 1, fields)
        dynamic = (reply if callable(reply) else None, tool_calls if callable(tool_calls) else None)
        self._server.add_rule(entry, dynamic)
        handle = RuleHandle(self, len(self._rules), entry.spec.name or "")
        self._rules.append(handle)
        return handle

    def load(self, source: str | Path) -> None:
        """Replace this test's base rules with those of a responses file (a path) or of YAML text."""
        model = read_rules(source, self._rootdir)
        self._server.load(model)

    def fail_next(self, status: int = 429, count: int = 1, mode: ErrorMode = "before") -> None:
        """Fail the next `count` model requests with `status`; `mode` is before, mid_stream, disconnect or timeout."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"mockllm.fail_next: status must be an HTTP error status (400-599), not {status!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"mockllm.fail_next: count must be a whole number of at least 0, not {count!r}")
        if mode not in ERROR_MODES:
            raise ValueError(f"mockllm.fail_next: mode must be one of {', '.join(ERROR_MODES)}, not {mode!r}")
        self._server.fail_next(status, count, mode)

    def set(self, **knobs: Any) -> None:
        """Set live knobs (`latency_ms`, `stream_speed`, `error_rate`, `api_key`, ...) for this test."""
        self._server.set_knobs(knobs)

    # -- what the app sent -------------------------------------------------------------------------

    @property
    def requests(self) -> list[MockRequest]:
        """The requests made during this test, oldest first."""
        if self._final is not None:
            return list(self._final[0])
        return self._server.requests(SETTLE_S)

    @property
    def last_request(self) -> MockRequest | None:
        """The newest request of this test, or None."""
        requests = self.requests
        return requests[-1] if requests else None

    def assert_all_rules_used(self) -> None:
        """Fail naming each rule this test added that answered no request."""
        hits = self._hits()
        unused = [h.name for h, n in zip(self._rules, hits, strict=True) if n == 0]
        if unused:
            names = ", ".join(repr(n) for n in unused)
            raise AssertionError(f"mockllm: {len(unused)} rule(s) answered no request: {names}")

    def _hits(self) -> list[int]:
        if self._final is not None:
            return list(self._final[1])
        return self._server.hits()

    # -- SDK clients ---------------------------------------------------------------------------------

    def openai_client(self, **kw: Any) -> openai.OpenAI:
        """An `openai.OpenAI` pointed at the mock (a dummy key unless `api_key` is given; other keywords pass on)."""
        client: openai.OpenAI = self._client("openai", "OpenAI", kw)
        return client

    def async_openai_client(self, **kw: Any) -> openai.AsyncOpenAI:
        """An `openai.AsyncOpenAI` pointed at the mock."""
        client: openai.AsyncOpenAI = self._client("openai", "AsyncOpenAI", kw)
        return client

    def anthropic_client(self, **kw: Any) -> anthropic.Anthropic:
        """An `anthropic.Anthropic` pointed at the mock."""
        client: anthropic.Anthropic = self._client("anthropic", "Anthropic", kw)
        return client

    def async_anthropic_client(self, **kw: Any) -> anthropic.AsyncAnthropic:
        """An `anthropic.AsyncAnthropic` pointed at the mock."""
        client: anthropic.AsyncAnthropic = self._client("anthropic", "AsyncAnthropic", kw)
        return client

    def _client(self, package: str, name: str, kw: dict[str, Any]) -> Any:
        cls = getattr(sdk(package), name)
        if package == "openai":
            defaults: dict[str, Any] = {"base_url": self.openai_base_url, "api_key": DUMMY_OPENAI_KEY}
        else:
            defaults = {"base_url": self.anthropic_base_url, "api_key": DUMMY_ANTHROPIC_KEY}
        if self.headers:
            defaults["default_headers"] = {**self.headers, **kw.pop("default_headers", {})}
        client = cls(**{**defaults, **kw})
        self._clients.append(client)
        return client

    # -- the plugin's side -------------------------------------------------------------------------

    def finish(self) -> str | None:
        """End the test: keep its requests and hits, close the sync clients, and undo what it set.

        Returns why the test fails: a reply function raised, or (strict mode) a request matched no rule."""
        requests, hits = self.requests, self._hits()
        problem = self.take_problems()
        self._final = (requests, hits)
        for client in self._clients:
            close = getattr(client, "close", None)
            if close is not None and not is_async(client):
                close()
        self._server.end()
        return problem

    def take_problems(self) -> str | None:
        """Why the test fails, for what happened since the last call (None: nothing): a rule's
        function raised, or (strict mode) a request matched no rule. Each is told once."""
        failures, unmatched = self._server.failures(), self._server.unmatched()
        told_failures, told_unmatched = self._told
        new_failures, new_unmatched = failures[told_failures:], unmatched[told_unmatched:]
        self._told = (len(failures), len(unmatched))
        problems = []
        if new_failures:
            lines = "\n".join(f"  - {f}" for f in new_failures)
            problems.append(f"mockllm: a rule's function raised while answering:\n{lines}")
        if new_unmatched:
            lines = "\n".join(f"  - {u.describe()}" for u in new_unmatched)
            problems.append(f"mockllm strict mode: {len(new_unmatched)} request(s) matched no rule:\n{lines}")
        return "\n".join(problems) or None

    def report(self) -> str:
        """The test's requests, one line each, for the failure report."""
        requests = self.requests
        if not requests:
            return "(no requests)"
        return "\n".join(describe(r) for r in requests)


def describe(request: MockRequest) -> str:
    """One line: method, path, status, rule, a preview of the prompt; then the near misses, one a line."""
    prompt = clip(" ".join(request.prompt.split()), PREVIEW_CHARS)
    rule = request.rule if request.rule is not None else "-"
    line = f"{request.method} {request.path} {request.status or 'open'} rule={rule} prompt={prompt!r}"
    return "\n".join([line, *(f"    nearest: {r} ({reason})" for r, reason in request.near_misses)])


def is_async(client: Any) -> bool:
    """Whether an SDK client is an async one (its `close` is a coroutine)."""
    return type(client).__name__.startswith("Async")


def sdk(package: str) -> ModuleType:
    """Import an SDK package, or fail in one line naming what to install."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"mockllm: this client needs the {package} package: pip install {package}") from None
