"""Testing with the mock in-process: what the pytest plugin (`mockllm_tui.pytest_plugin`) is built on.

- server.py: the session's server, on its own loop in a background thread
- control.py: what the fixture does to it (reset, rules, knobs, the requests), run on that loop
- rules.py: a test's rules before its base rules, and strict mode
- mock.py: `MockLLM`, the `mockllm` fixture's value
"""

from __future__ import annotations

from mockllm_tui.testing.control import MockRequest
from mockllm_tui.testing.mock import MockLLM, RuleHandle

__all__ = ["MockLLM", "MockRequest", "RuleHandle"]
