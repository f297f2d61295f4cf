"""The pytest plugin (entry point `mockllm`): the mock in-process, rules per test, and the requests to assert on.

Importing it costs nothing: the server, and the rest of the package, load when a test first asks for
the `mockllm` or `mockllm_env` fixture. One server runs per session (per xdist worker), unless a
shared one is named (ini `mockllm_url` or the environment's `MOCKLLM_URL`, which wins): then the
plugin starts none, and each test works in a session of its own on that server.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mockllm_tui.rules.model import RulesModel
    from mockllm_tui.testing import MockLLM
    from mockllm_tui.testing.remote import RemoteServer
    from mockllm_tui.testing.server import SessionServer

INI_RESPONSES = "mockllm_responses"
INI_URL = "mockllm_url"
URL_ENV = "MOCKLLM_URL"
MARKER = "mockllm"
MARKER_KEYS = ("responses", "strict")
REPORT_SECTION = "mockllm requests"
STRICT_SECTION = "mockllm strict mode"

active_mock = pytest.StashKey["MockLLM"]()
reported = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini options: the session's base rules, and a shared server's URL."""
    parser.addini(
        INI_RESPONSES,
        "mockllm: the responses file every test starts from (relative to the rootdir; default: no file rules)",
        default="",
    )
    parser.addini(
        INI_URL,
        f"mockllm: a running mock to share (each test in a session of its own; {URL_ENV} wins); "
        "default: the plugin starts its own",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so --strict-markers accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(responses=None, strict=False): the test's base rules (a responses file, relative to the "
        "rootdir) and strict mode (a request no rule matches gets a 404 and fails the test)",
    )


def shared_url(config: pytest.Config) -> str:
    """The shared server's URL ("" when the plugin starts its own)."""
    return (os.environ.get(URL_ENV) or str(config.getini(INI_URL) or "")).strip()


@pytest.fixture(scope="session")
def _mockllm_server(pytestconfig: pytest.Config) -> Iterator[SessionServer | RemoteServer]:
    """The session's server, started on first use (or the shared one, named by URL)."""
    from mockllm_tui.rules.model import RulesModel
    from mockllm_tui.testing.rules import read_rules
    from mockllm_tui.testing.server import SessionServer

    source = str(pytestconfig.getini(INI_RESPONSES) or "").strip()
    base = read_rules(Path(source), pytestconfig.rootpath) if source else RulesModel()
    url = shared_url(pytestconfig)
    if url:
        from mockllm_tui.testing.remote import RemoteServer

        remote = RemoteServer(url, base if source else None)
        yield remote
        remote.stop()
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    server = SessionServer(base, f"mockllm-{worker}" if worker else "mockllm").start()
    yield server
    server.stop()


def marker_options(item: pytest.Item) -> dict[str, Any]:
    """The `mockllm` marker's keywords, the closest marker's winning for each."""
    options: dict[str, Any] = {}
    for mark in item.iter_markers(MARKER):
        unknown = [k for k in mark.kwargs if k not in MARKER_KEYS]
        if mark.args or unknown:
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.mockllm(responses=..., strict=...) only")
        for key, value in mark.kwargs.items():
            options.setdefault(key, value)
    return options


@pytest.fixture
def mockllm(_mockllm_server: SessionServer | RemoteServer, request: pytest.FixtureRequest) -> Iterator[MockLLM]:
    """The mock for this test: rules, knobs, failures, the requests made, and SDK clients pointed at it."""
    from mockllm_tui.testing import MockLLM
    from mockllm_tui.testing.rules import read_rules

    options = marker_options(request.node) if isinstance(request.node, pytest.Item) else {}
    rootdir = request.config.rootpath
    responses = options.get("responses")
    base: RulesModel | None = read_rules(Path(responses), rootdir) if responses else None
    mock = MockLLM(_mockllm_server, rootdir, base=base, strict=bool(options.get("strict", False)))
    request.node.stash[active_mock] = mock
    yield mock
    problem = mock.finish()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def mockllm_env(mockllm: MockLLM, monkeypatch: pytest.MonkeyPatch) -> MockLLM:
    """Point clients built from the environment at the mock: the base URLs, and dummy keys when unset."""
    monkeypatch.setenv("OPENAI_BASE_URL", mockllm.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", mockllm.anthropic_base_url)
    from mockllm_tui.testing.mock import DUMMY_ANTHROPIC_KEY, DUMMY_OPENAI_KEY

    for name, dummy in (("OPENAI_API_KEY", DUMMY_OPENAI_KEY), ("ANTHROPIC_API_KEY", DUMMY_ANTHROPIC_KEY)):
        if not os.environ.get(name):
            monkeypatch.setenv(name, dummy)
    return mockllm


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Fail the test itself (once, not again at teardown) when a request matched no rule in strict
    mode or a rule's function raised, and add the test's requests to the report of its first failing phase."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    mock = item.stash.get(active_mock, None)
    if mock is not None and report.when == "call" and (report.passed or report.failed):
        strict_failure(item, report, mock.take_problems())
    if mock is not None and report.failed and not item.stash.get(reported, False):
        item.stash[reported] = True
        report.sections.append((REPORT_SECTION, mock.report()))


def strict_failure(item: pytest.Item, report: pytest.TestReport, problem: str | None) -> None:
    """Make the test's call report a failure that says which requests matched no rule (added to the
    test's own failure when it failed already, as it does when the SDK raised on the 404)."""
    if problem is None:
        return
    addsection = getattr(report.longrepr, "addsection", None)  # a traceback's report
    if report.failed and callable(addsection):
        addsection(STRICT_SECTION, problem)
    elif report.failed:
        report.longrepr = f"{report.longrepr}\n\n{problem}"
    else:
        try:
            pytest.fail(problem, pytrace=False)
        except pytest.fail.Exception:
            failure = pytest.ExceptionInfo[BaseException].from_current()
        report.outcome = "failed"
        report.longrepr = item.repr_failure(failure)
