"""The API key through the real CLI: required when set, and never written to stdout, stderr or the log."""

from __future__ import annotations

import signal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.test_headless import start_headless

KEY = "sk-mock-SECRET-4242"


def test_api_key_is_required_and_never_logged(tmp_path: Path) -> None:
    """JSON log lines carry the request headers, so they are the place a key could leak."""
    log_file = tmp_path / "requests.log"
    proc, port, _ = start_headless("--api-key", KEY, "--log-file", str(log_file), "--log-format", "json", cwd=tmp_path)
    try:
        root = f"http://127.0.0.1:{port}"
        good = openai.OpenAI(base_url=root + "/v1", api_key=KEY, max_retries=0)
        assert good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).choices
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=root + "/v1", api_key=KEY + "x", max_retries=0).models.list()
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=root, api_key="wrong", max_retries=0).messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        settings = httpx.get(root + "/_mock/settings", headers={"x-api-key": KEY})
        assert settings.status_code == 200 and KEY not in settings.text
        journal = httpx.get(root + "/_mock/journal", headers={"authorization": f"Bearer {KEY}"})
        assert journal.status_code == 200 and KEY not in journal.text
        assert "[redacted]" in journal.text
        assert httpx.get(root + "/_mock/journal").status_code == 401
        assert httpx.get(root + "/health").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    log = log_file.read_text()
    assert '"path":"/v1/chat/completions"' in log and '"status":401' in log and '"[redacted]"' in log
    for text in (out, err, log):
        assert KEY not in text
