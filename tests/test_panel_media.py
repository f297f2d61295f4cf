"""Media requests in the panel: a row with the prompt or the file name, a picture's preview."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from mockllm_tui.engine.audio import encode_audio, speech_pcm
from mockllm_tui.tui.widgets.request_log import RequestLog
from tests.support import rendered
from tests.test_panel import open_panel


async def test_an_image_row_shows_the_prompt_and_the_detail_a_preview(tmp_path: Path) -> None:
    async with open_panel(tmp_path) as panel:
        await panel.client.images.generate(model="gpt-image-1", prompt="a green meadow", size="1024x1536")
        log = panel.app.query_one(RequestLog)
        await panel.until(lambda: log.row_count == 1 and not next(iter(log.rows_by_id.values())).open, 15)
        row = [str(cell) for cell in log.get_row_at(0)]
        assert "a green meadow" in row and "gpt-image-1" in row and "200" in row
        detail = panel.app.query_one("#detail-body", Static)
        await panel.until(lambda: "[1 x png 1024x1536]" in rendered(detail), 15)
        preview = [line for line in rendered(detail).splitlines() if line.strip().startswith("▀")]
        assert len(preview) == 24  # 48 pixels high, two to a cell
        assert len(preview[0].strip()) == 32  # 2:3, as the picture


async def test_a_transcription_row_shows_the_file_name(tmp_path: Path) -> None:
    async with open_panel(tmp_path) as panel:
        audio = encode_audio(speech_pcm("hello there", "alloy"), "wav")
        await panel.client.audio.transcriptions.create(model="whisper-1", file=("standup-notes.wav", audio))
        log = panel.app.query_one(RequestLog)
        await panel.until(lambda: log.row_count == 1 and not next(iter(log.rows_by_id.values())).open, 15)
        assert "standup-notes.wav" in [str(cell) for cell in log.get_row_at(0)]
