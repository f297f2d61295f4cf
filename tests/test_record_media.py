"""Record and replay of the media endpoints: a second in-process server is the "real" upstream; its
pictures and audio are saved beside the proxy's responses file, its transcripts and verdicts as rules."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from openai import AsyncOpenAI

from mockllm_tui.engine.audio import encode_audio, speech_pcm
from mockllm_tui.rules.fileio import PACKAGED_EXAMPLE
from tests.conftest import make_store, serving
from tests.test_record import SECRET, recording_pair, replaying, store_for


async def test_media_answers_are_recorded_beside_the_file_and_replayed_offline(tmp_path: Path) -> None:
    upload = ("standup.wav", encode_audio(speech_pcm("good morning team", "alloy"), "wav"))
    async with recording_pair(tmp_path) as pair:
        client = pair.openai()
        picture = await client.images.generate(model="gpt-image-1", prompt="A lighthouse at dusk", size="1024x1024")
        speech = (await client.audio.speech.create(model="tts-1", voice="nova", input="Welcome aboard")).read()
        heard = await client.audio.transcriptions.create(model="whisper-1", file=upload)
        verdict = await client.moderations.create(input="a calm lake")
        assert pair.upstream_hits() == 4
        # While recording, a recorded rule does not answer: the repeat goes upstream, recorded once.
        await client.images.generate(model="gpt-image-1", prompt="A lighthouse at dusk", size="1024x1024")
        assert pair.upstream_hits() == 5
        assert pair.proxy.store.journal()[-1].rule == "upstream"
        added = "".join(pair.added_lines())
        rules = yaml.safe_load(pair.path.read_text())["rules"][1:]
    assert picture.data is not None and heard.text == "upstream default"
    assert [r["match"]["endpoint"] for r in rules] == [
        "images.generations",
        "audio.speech",
        "audio.transcriptions",
        "moderations",
    ]
    assert rules[0]["image"].startswith("recorded/a-lighthouse-at-dusk-") and rules[0]["image"].endswith(".png")
    assert (tmp_path / rules[0]["image"]).read_bytes() == base64.b64decode(picture.data[0].b64_json or "")
    assert (tmp_path / rules[1]["audio"]).read_bytes() == speech and rules[1]["audio"].endswith(".mp3")
    assert rules[2]["match"]["file"] == "standup.wav" and rules[2]["reply"] == "upstream default"
    assert rules[3]["moderation"] == {"flagged": []} and not verdict.results[0].flagged
    assert "# recorded " in added and SECRET not in added
    async with replaying(pair.path) as live:
        offline = AsyncOpenAI(base_url=live.openai_url, api_key="sk-any", max_retries=0)
        again = await offline.images.generate(model="gpt-image-1", prompt="A lighthouse at dusk", size="1024x1024")
        assert again.data is not None and again.data[0].b64_json == picture.data[0].b64_json
        assert (await offline.audio.speech.create(model="tts-1", voice="nova", input="Welcome aboard")).read() == speech
        assert (await offline.audio.transcriptions.create(model="whisper-1", file=upload)).text == "upstream default"
        assert [(e.rule or "").split()[0] for e in live.store.journal()] == ["#2", "#3", "#4"]


async def test_recording_over_the_packaged_example_saves_beside_its_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = PACKAGED_EXAMPLE.read_bytes()
    monkeypatch.chdir(tmp_path)
    async with serving(make_store()) as upstream:
        store = store_for(PACKAGED_EXAMPLE, upstreams=(("openai", upstream.root),))
        store.set_knobs("cli", {"record": True})
        async with serving(store) as proxy:
            client = AsyncOpenAI(base_url=proxy.openai_url, api_key="sk-any", max_retries=0)
            speech = (await client.audio.speech.create(model="tts-1", voice="nova", input="Hello there")).read()
    assert PACKAGED_EXAMPLE.read_bytes() == before
    rules = yaml.safe_load((tmp_path / "responses.yml").read_text())["rules"]
    assert (tmp_path / rules[-1]["audio"]).read_bytes() == speech
    assert not (PACKAGED_EXAMPLE.parent / "recorded").exists()
