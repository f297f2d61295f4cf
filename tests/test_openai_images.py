"""The images endpoints through the openai SDK: real pictures of the asked size and format,
deterministic, as b64 or a served URL, streamed partial images, rules' files, knobs and errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types import ImageEditCompletedEvent, ImageGenCompletedEvent, ImageGenPartialImageEvent, ImagesResponse
from openai.types.image_edit_partial_image_event import ImageEditPartialImageEvent
from PIL import Image

from tests.conftest import Live, serving_file
from tests.openai_testkit import assert_openai_error, post_raw, sse_events

RULES = """
rules:
  - name: logo
    match: {contains: "company logo"}
    image: logo.webp
  - name: busy
    match: {contains: "busy artist"}
    error: {status: 503, message: "the artist is busy"}
  - name: cat-chat
    match: {contains: cat}
    reply: "Meow."
"""


@pytest.fixture
async def images(tmp_path: Path) -> Any:
    """The live server with RULES, and the rule's logo file beside the responses file."""
    Image.new("RGB", (300, 200), (10, 200, 30)).save(tmp_path / "logo.webp", "WEBP")
    async with serving_file(tmp_path, RULES) as running:
        yield running


def client(live: Live) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def decoded(b64: str | None) -> bytes:
    assert b64 is not None
    return base64.b64decode(b64)


async def generate_raw(live: Live, **body: Any) -> ImagesResponse:
    response = await post_raw(live, "/v1/images/generations", {"prompt": "a red fox in the snow", **body})
    assert response.status_code == 200, response.text
    return ImagesResponse.model_validate(orjson.loads(response.content), strict=True)


def png(size: tuple[int, int] = (512, 512), colour: tuple[int, ...] = (200, 30, 30, 255), mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("model", "size", "fmt"),
    [
        ("gpt-image-1", "1024x1024", "png"),
        ("gpt-image-1", "1536x1024", "jpeg"),
        ("gpt-image-1-mini", "1024x1536", "webp"),
        ("gpt-image-2", "1536x864", "png"),
    ],
)
async def test_gpt_image_generations_are_real_pictures_with_usage(
    images: Live, model: str, size: str, fmt: str
) -> None:
    result = await generate_raw(images, model=model, size=size, output_format=fmt, quality="low")
    assert result.data is not None and len(result.data) == 1
    assert result.data[0].url is None
    image = picture(decoded(result.data[0].b64_json))
    assert (image.format or "").lower() == fmt
    assert f"{image.width}x{image.height}" == size == result.size
    assert result.output_format == fmt and result.quality == "low" and result.background == "opaque"
    assert result.usage is not None
    assert result.usage.input_tokens == result.usage.input_tokens_details.text_tokens > 0
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert result.usage.output_tokens > 0


async def test_the_same_prompt_gives_the_same_picture_and_another_prompt_another(images: Live) -> None:
    sdk = client(images)
    one = await sdk.images.generate(model="gpt-image-1", prompt="a lighthouse at dusk", n=2)
    two = await sdk.images.generate(model="gpt-image-1", prompt="a lighthouse at dusk", n=2)
    other = await sdk.images.generate(model="gpt-image-1", prompt="a submarine")
    assert one.data is not None and two.data is not None and other.data is not None
    assert [d.b64_json for d in one.data] == [d.b64_json for d in two.data]
    assert one.data[0].b64_json != one.data[1].b64_json  # n pictures differ from one another
    assert other.data[0].b64_json != one.data[0].b64_json


async def test_quality_and_compression_change_the_encoding(images: Live) -> None:
    low = await generate_raw(images, model="gpt-image-1", output_format="jpeg", quality="low")
    high = await generate_raw(images, model="gpt-image-1", output_format="jpeg", quality="high")
    squeezed = await generate_raw(images, model="gpt-image-1", output_format="webp", output_compression=5)
    assert low.data and high.data and squeezed.data
    assert len(decoded(low.data[0].b64_json)) < len(decoded(high.data[0].b64_json))
    assert picture(decoded(squeezed.data[0].b64_json)).format == "WEBP"
    assert high.usage and low.usage and high.usage.output_tokens > low.usage.output_tokens


async def test_a_transparent_background_has_alpha(images: Live) -> None:
    result = await generate_raw(images, model="gpt-image-1", background="transparent", output_format="png")
    assert result.background == "transparent" and result.data
    image = picture(decoded(result.data[0].b64_json)).convert("RGBA")
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((512, 512))[3] == 255


async def test_dall_e_answers_a_url_the_mock_serves_without_auth(images: Live) -> None:
    result = await client(images).images.generate(model="dall-e-3", prompt="a red fox", size="1792x1024")
    ImagesResponse.model_validate(result.model_dump(mode="json", exclude_unset=True), strict=True)
    assert result.data is not None and result.usage is None
    url = result.data[0].url
    assert url is not None and url.startswith(images.root) and result.data[0].revised_prompt == "a red fox"
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert picture(fetched.content).size == (1792, 1024)
    b64 = await client(images).images.generate(
        model="dall-e-2", prompt="a red fox", size="256x256", response_format="b64_json"
    )
    assert b64.data is not None and picture(decoded(b64.data[0].b64_json)).size == (256, 256)
    async with httpx.AsyncClient() as http:
        missing = await http.get(images.root + "/v1/images/files/img-nothing.png")
    assert_openai_error(missing, 404)


async def test_a_served_url_needs_no_key_even_with_api_key(images: Live) -> None:
    images.store.set_knobs("live", {"api_key": "sk-secret"})
    sdk = openai.AsyncOpenAI(base_url=images.openai_url, api_key="sk-secret", max_retries=0)
    result = await sdk.images.generate(model="dall-e-2", prompt="x", size="512x512")
    assert result.data is not None and result.data[0].url is not None
    async with httpx.AsyncClient() as http:
        assert (await http.get(result.data[0].url)).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        await client(images).images.generate(model="dall-e-2", prompt="x")


async def test_streamed_generation_sends_partial_images_then_the_same_picture(images: Live) -> None:
    body = {"model": "gpt-image-1", "prompt": "a castle", "stream": True, "partial_images": 2, "size": "1024x1024"}
    response = await post_raw(images, "/v1/images/generations", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    names = [name for name, _ in events]
    assert names == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    partials = [ImageGenPartialImageEvent.model_validate(orjson.loads(d), strict=True) for _, d in events[:2]]
    assert [p.partial_image_index for p in partials] == [0, 1]
    done = ImageGenCompletedEvent.model_validate(orjson.loads(events[2][1]), strict=True)
    assert picture(decoded(partials[0].b64_json)).size == (1024, 1024)
    whole = await generate_raw(images, model="gpt-image-1", prompt="a castle", size="1024x1024")
    assert whole.data and done.b64_json == whole.data[0].b64_json
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    # Through the SDK, with no partial images: just the completed event.
    stream = await client(images).images.generate(model="gpt-image-1", prompt="a castle", stream=True)
    assert [event.type async for event in stream] == ["image_generation.completed"]


async def test_edits_take_images_and_a_mask_and_stream_edit_events(images: Live) -> None:
    mask = Image.new("RGBA", (512, 512), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 256, 512))
    out = io.BytesIO()
    mask.save(out, "PNG")
    sdk = client(images)
    result = await sdk.images.edit(
        model="gpt-image-1",
        image=[("base.png", png(), "image/png"), ("second.png", png((256, 256)), "image/png")],
        mask=("mask.png", out.getvalue(), "image/png"),
        prompt="paint the left half",
        size="1024x1024",
    )
    ImagesResponse.model_validate(result.model_dump(mode="json", exclude_unset=True), strict=True)
    assert result.data is not None and result.usage is not None
    edited = picture(decoded(result.data[0].b64_json)).convert("RGB")
    assert edited.size == (1024, 1024)
    assert edited.getpixel((900, 500)) == (200, 30, 30)  # outside the mask's hole: the original
    assert edited.getpixel((100, 500)) != (200, 30, 30)  # inside it: painted
    assert result.usage.input_tokens_details.image_tokens > 0
    stream = await sdk.images.edit(
        model="gpt-image-1", image=("base.png", png(), "image/png"), prompt="x", stream=True, partial_images=1
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    ImageEditPartialImageEvent.model_validate(events[0].model_dump(mode="json"), strict=True)
    ImageEditCompletedEvent.model_validate(events[1].model_dump(mode="json"), strict=True)


async def test_variations_are_squares_of_the_asked_size(images: Live) -> None:
    result = await client(images).images.create_variation(
        image=("in.png", png((400, 400)), "image/png"), n=3, size="512x512", response_format="b64_json"
    )
    assert result.data is not None and len(result.data) == 3
    assert {picture(decoded(d.b64_json)).size for d in result.data} == {(512, 512)}
    assert len({d.b64_json for d in result.data}) == 3


async def test_a_rule_names_the_picture_file_sent_as_it_is(images: Live, tmp_path: Path) -> None:
    result = await generate_raw(images, model="gpt-image-1", prompt="our company logo", output_format="png", n=2)
    assert result.data is not None and result.output_format == "webp" and result.size == "300x200"
    assert [decoded(d.b64_json) for d in result.data] == [(tmp_path / "logo.webp").read_bytes()] * 2
    assert images.store.journal()[-1].rule == "logo"
    # A chat rule on "cat" never changes a picture of a cat.
    cat = await generate_raw(images, model="gpt-image-1", prompt="a cat", size="1024x1024")
    assert cat.data and picture(decoded(cat.data[0].b64_json)).size == (1024, 1024)
    (tmp_path / "logo.webp").unlink()
    gone = await post_raw(images, "/v1/images/generations", {"model": "gpt-image-1", "prompt": "company logo"})
    assert_openai_error(gone, 500, mentions="logo.webp")


async def test_knobs_and_rule_errors_apply(images: Live) -> None:
    busy = await post_raw(images, "/v1/images/generations", {"model": "gpt-image-1", "prompt": "a busy artist"})
    assert_openai_error(busy, 503, mentions="the artist is busy")
    images.store.set_fail_next(1, 429)
    failed = await post_raw(images, "/v1/images/generations", {"model": "gpt-image-1", "prompt": "x"})
    assert_openai_error(failed, 429)
    assert failed.headers["x-should-retry"] == "true"
    injected = await post_raw(
        images,
        "/v1/images/edits",
        None,
        files={"image": ("a.png", png())},
        data={"prompt": "x"},
        headers={"x-mock-error": "500"},
    )
    assert_openai_error(injected, 500)
    entry = images.store.journal()[-1]
    assert entry.endpoint == "images.edits" and entry.provider == "openai" and entry.preview == "x"


@pytest.mark.parametrize(
    ("body", "param", "mentions"),
    [
        ({"model": "gpt-image-1"}, "prompt", "prompt"),
        ({"model": "gpt-image-1", "prompt": "x", "size": "999x999"}, "size", "999x999"),
        ({"model": "dall-e-3", "prompt": "x", "size": "256x256"}, "size", "1792x1024"),
        ({"model": "dall-e-2", "prompt": "x", "size": "1536x1024"}, "size", "512x512"),
        ({"model": "gpt-image-2", "prompt": "x", "size": "1000x1000"}, "size", "1000x1000"),
        ({"model": "gpt-image-1", "prompt": "x", "output_format": "bmp"}, "output_format", "bmp"),
        ({"model": "gpt-image-1", "prompt": "x", "quality": "hd"}, "quality", "hd"),
        ({"model": "gpt-image-1", "prompt": "x", "n": 11}, "n", "between 1 and 10"),
        ({"model": "gpt-image-1", "prompt": "x", "partial_images": 4}, "partial_images", "between 0 and 3"),
        (
            {"model": "gpt-image-1", "prompt": "x", "output_format": "jpeg", "background": "transparent"},
            "background",
            "",
        ),
        ({"model": "gpt-image-1", "prompt": "x", "response_format": "url"}, "response_format", "b64_json"),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, "n", "n=1"),
        ({"model": "dall-e-2", "prompt": "x", "stream": True}, "stream", "Streaming"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt", "too long"),
    ],
)
async def test_bad_generation_requests_get_openai_errors(
    images: Live, body: dict[str, Any], param: str, mentions: str
) -> None:
    response = await post_raw(images, "/v1/images/generations", body)
    assert_openai_error(response, 400, mentions=mentions, param=param)
    if param != "prompt" or "too long" in mentions:
        assert orjson.loads(response.content)["error"]["code"] == "invalid_value"


async def test_bad_uploads_get_openai_errors(images: Live) -> None:
    def post(path: str, files: Any, **data: str) -> Any:
        return post_raw(images, path, None, files=files, data={"prompt": "x", **data})

    assert_openai_error(await post("/v1/images/edits", {"mask": ("m.png", png())}), 400, param="image")
    not_image = {"image": ("a.png", b"plain text, not a picture")}
    assert_openai_error(await post("/v1/images/edits", not_image, model="gpt-image-1"), 400, param="image")
    wrong_mask = {"image": ("a.png", png()), "mask": ("m.png", png((64, 64)))}
    assert_openai_error(await post("/v1/images/edits", wrong_mask, model="gpt-image-1"), 400, param="mask")
    rectangle = {"image": ("a.png", png((300, 200)))}
    assert_openai_error(await post("/v1/images/variations", rectangle), 400, param="image", mentions="square")
    json_body = await post_raw(images, "/v1/images/edits", {"prompt": "x", "image": "a.png"})
    assert_openai_error(json_body, 400, mentions="multipart/form-data")
    model = await post("/v1/images/variations", {"image": ("a.png", png())}, model="gpt-image-1")
    assert_openai_error(model, 400, param="model")
