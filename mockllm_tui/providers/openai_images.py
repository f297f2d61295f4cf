"""OpenAI's images API: `POST /v1/images/generations`, `/v1/images/edits` and `/v1/images/variations`,
and `GET /v1/images/files/{name}`, where the pictures answered as a `url` are served."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from mockllm_tui.core.conversation import Reply, RequestError
from mockllm_tui.core.media import media_request
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.images import (
    ImageFormat,
    ImageFormatError,
    PictureInfo,
    draw_picture,
    edited_picture,
    encode_picture,
    image_input_tokens,
    image_output_tokens,
    inspect_picture,
    partial_pictures,
    seed_of,
    thumbnail,
    varied_picture,
)
from mockllm_tui.providers.base import Endpoint, Frame, Request, new_id
from mockllm_tui.providers.media import MediaAnswer, MediaContext, MediaEndpoint, MediaJob, RecordedMedia
from mockllm_tui.providers.multipart import Form, Upload
from mockllm_tui.providers.openai_common import OpenAIBase
from mockllm_tui.providers.openai_media import (
    PROVIDER,
    form_bool,
    form_int,
    form_str,
    invalid_value,
    one_of,
    read_fields,
    required_upload,
    sse_event,
)
from mockllm_tui.providers.registry import register_provider

Family = Literal["gpt", "dall-e-3", "dall-e-2"]
GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
SIZES: dict[Family, tuple[str, ...]] = {
    "gpt": GPT_SIZES,
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
QUALITIES: dict[Family, tuple[str, ...]] = {
    "gpt": ("low", "medium", "high", "xhigh", "max", "auto"),
    "dall-e-3": ("standard", "hd", "auto"),
    "dall-e-2": ("standard", "auto"),
}
PROMPT_LIMITS: dict[Family, int] = {"gpt": 32_000, "dall-e-3": 4_000, "dall-e-2": 1_000}
OUTPUT_FORMATS = ("png", "jpeg", "webp", "gif", "svg")
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
MAX_EDGE, MAX_PIXELS = 3840, 3840 * 2160
GPT_UPLOAD_LIMIT = 50 * 1024 * 1024
DALLE_UPLOAD_LIMIT = 4 * 1024 * 1024
MAX_EDIT_IMAGES = 16
#: How long the pictures answered as a `url` are served, and how many bytes of them are kept.
URL_TTL_S = 3600.0
URL_STORE_BYTES = 512 * 1024 * 1024
FILES_PATH = "/v1/images/files/"


def family_of(model: str) -> Family:
    """Which family a model's rules follow (an unknown model follows GPT Image's)."""
    name = model.lower()
    if name.startswith("dall-e-3"):
        return "dall-e-3"
    if name.startswith("dall-e-2"):
        return "dall-e-2"
    return "gpt"


def parse_size(model: str, value: str | None, auto: tuple[int, int] = (1024, 1024)) -> tuple[int, int]:
    """The output size for a `size` value (`auto` gives `auto`); a 400 for a size the model lacks."""
    family = family_of(model)
    if value is None:
        value = "auto" if family == "gpt" else "1024x1024"
    if family == "gpt" and value == "auto":
        return auto
    if value in SIZES[family]:
        width_s, _, height_s = value.partition("x")
        return int(width_s), int(height_s)
    if family == "gpt" and model.lower().startswith("gpt-image-2"):
        width_s, _, height_s = value.partition("x")
        if width_s.isdigit() and height_s.isdigit():
            width, height = int(width_s), int(height_s)
            if (
                width % 16 == 0
                and height % 16 == 0
                and 0 < width <= MAX_EDGE
                and 0 < height <= MAX_EDGE
                and width * height <= MAX_PIXELS
                and max(width, height) <= 3 * min(width, height)
            ):
                return width, height
    listed = ", ".join(f"'{s}'" for s in SIZES[family])
    raise invalid_value(f"Invalid value: '{value}'. Supported values are: {listed}.", "size")


def auto_size(info: PictureInfo) -> tuple[int, int]:
    """GPT Image's `auto` size for an edit: the standard size closest to the upload's shape."""
    if info.width > info.height * 1.2:
        return 1536, 1024
    if info.height > info.width * 1.2:
        return 1024, 1536
    return 1024, 1024


@dataclass(slots=True)
class ImageJob:
    """What to draw: parsed and checked, ready to render off the event loop."""

    endpoint: str
    model: str
    prompt: str
    n: int
    width: int
    height: int
    fmt: ImageFormat
    quality: str
    compression: int | None
    background: str
    as_url: bool
    stream: bool
    partial_images: int
    inputs: list[Upload] = field(default_factory=list)
    input_infos: list[PictureInfo] = field(default_factory=list)
    mask: bytes | None = None

    @property
    def gpt(self) -> bool:
        """Whether the model is a GPT Image model (b64 only, usage, streaming)."""
        return family_of(self.model) == "gpt"

    @property
    def size(self) -> str:
        """`WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"

    def seed(self, index: int) -> int:
        """The seed of picture `index`: the prompt (and, for edits and variations, the upload)."""
        upload = hashlib.blake2b(self.inputs[0].data, digest_size=8).hexdigest() if self.inputs else ""
        return seed_of(self.endpoint, self.prompt, upload, self.width, self.height, index)

    def render(self, index: int) -> Any:
        """Picture `index`, decoded (a Pillow image)."""
        transparent = self.background == "transparent"
        if self.endpoint == "images.variations":
            return varied_picture(self.inputs[0].data, self.width, self.height, self.seed(index))
        if self.endpoint == "images.edits":
            base = self.inputs[0].data
            return edited_picture(
                self.prompt, base, self.mask, self.width, self.height, self.seed(index), transparent=transparent
            )
        return draw_picture(self.prompt, self.width, self.height, self.seed(index), transparent=transparent)

    def encode(self, picture: Any) -> bytes:
        """A picture in the requested format and quality."""
        return encode_picture(picture, self.fmt, self.quality, self.compression)


@dataclass(slots=True)
class Rendered:
    """The pictures of an answer (each with its partial images when streamed), and what they are."""

    pictures: list[bytes]
    partials: list[list[bytes]]
    fmt: str
    width: int
    height: int
    #: A small copy of the first picture, for the panel.
    thumb: tuple[int, int, bytes] | None = None


def render_job(job: ImageJob, file: bytes | None) -> Rendered:
    """The answer's pictures: the rule's file (as it is) or `n` drawn for the job."""
    if file is not None:
        try:
            info = inspect_picture(file, ("png", "jpeg", "webp", "gif"))
        except ImageFormatError as exc:
            raise RequestError(f"mockllm-tui: the rule's image file is {exc}", status=500) from None
        parts: list[list[bytes]] = [[] for _ in range(job.n)]
        return Rendered([file] * job.n, parts, info.format, info.width, info.height, thumbnail(file))
    pictures, partials, thumb = [], [], None
    for index in range(job.n):
        picture = job.render(index)
        pictures.append(job.encode(picture))
        count = job.partial_images if job.stream else 0
        partials.append([job.encode(p) for p in partial_pictures(picture, count)])
        thumb = thumb or thumbnail(picture)
    return Rendered(pictures, partials, job.fmt, job.width, job.height, thumb)


class ServedImages:
    """The pictures answered as a `url`: kept for URL_TTL_S (within a byte budget), by name."""

    def __init__(self, budget: int = URL_STORE_BYTES) -> None:
        self.budget = budget
        self._items: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self._bytes = 0
        # Answers are made on worker threads while the loop serves the pictures.
        self._lock = threading.Lock()

    def add(self, data: bytes, fmt: str) -> str:
        """Keep a picture; its name."""
        name = f"{new_id('img-')}.{fmt}"
        with self._lock:
            self._items[name] = (time.monotonic(), MIME.get(fmt, "application/octet-stream"), data)
            self._bytes += len(data)
            self._evict()
        return name

    def get(self, name: str) -> tuple[str, bytes] | None:
        """The content type and bytes of a kept picture (None when unknown or expired)."""
        with self._lock:
            self._evict()
            item = self._items.get(name)
        return None if item is None else (item[1], item[2])

    def _evict(self) -> None:
        now = time.monotonic()
        while self._items:
            name, (at, _, data) = next(iter(self._items.items()))
            if now - at <= URL_TTL_S and self._bytes <= self.budget:
                break
            del self._items[name]
            self._bytes -= len(data)


def _usage(job: ImageJob, rendered: Rendered, *, details: bool) -> dict[str, Any]:
    text_tokens = count_tokens(job.prompt)
    image_tokens = sum(image_input_tokens(i.width, i.height) for i in job.input_infos)
    each = image_output_tokens(rendered.width, rendered.height, _reported_quality(job.quality))
    output = each * len(rendered.pictures)
    usage: dict[str, Any] = {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
        "output_tokens": output,
        "total_tokens": text_tokens + image_tokens + output,
    }
    if details:
        usage["output_tokens_details"] = {"image_tokens": output, "text_tokens": 0}
    return usage


class ImageEndpoint(MediaEndpoint):
    """The shared parsing and answer of the three image endpoints."""

    operation = "image_generation"
    #: The prefix of the stream's event names (`image_generation`, `image_edit`).
    event_prefix = "image_generation"

    def parse_media(self, request: Request) -> MediaJob:
        """The job: what to draw, and the prompt (and upload's name) the rules see."""
        fields, form = read_fields(request.headers, request.body, multipart=self.multipart)
        job = self.parse(fields, form)
        upload = job.inputs[0].filename if job.inputs else None
        judged = media_request(PROVIDER, self.name, job.model, job.prompt, "image", file_name=upload, stream=job.stream)
        return MediaJob([judged], job.prompt or upload or "", job)

    def parse(self, fields: dict[str, Any], form: Form | None) -> ImageJob:
        """The request's job (a 400 naming the field that is wrong)."""
        raise NotImplementedError

    def answer(self, job: MediaJob, replies: list[Reply], ctx: MediaContext) -> MediaAnswer:
        """The pictures drawn for the job (or the rule's file) as JSON, or as a stream of events."""
        image_job: ImageJob = job.params
        rendered = render_job(image_job, ctx.rule_file)
        out = MediaAnswer(
            reply_text=f"[{len(rendered.pictures)} x {rendered.fmt} {rendered.width}x{rendered.height}]",
            thumbnail=rendered.thumb,
        )
        if image_job.gpt:
            usage = _usage(image_job, rendered, details=True)
            out.input_tokens, out.output_tokens = usage["input_tokens"], usage["output_tokens"]
        if image_job.stream:
            out.frames = list(self.stream_frames(image_job, rendered, ctx))
        else:
            out.body = orjson.dumps(self.body(image_job, rendered, ctx))
        return out

    def read_upstream(self, job: MediaJob, content_type: str, body: bytes) -> RecordedMedia | None:
        """The first picture of an `ImagesResponse` given as `b64_json` (a `url` answer is not kept)."""
        try:
            data = orjson.loads(body)["data"][0]["b64_json"]
            picture = base64.b64decode(data)
            info = inspect_picture(picture, ("png", "jpeg", "webp", "gif"))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            return None
        return RecordedMedia(file=picture, extension="jpg" if info.format == "jpeg" else info.format)

    def body(self, job: ImageJob, rendered: Rendered, ctx: MediaContext) -> dict[str, Any]:
        """An `ImagesResponse`."""
        served = _served(self)
        data = []
        for picture in rendered.pictures:
            item: dict[str, Any] = {}
            if job.as_url:
                item["url"] = f"{ctx.root}{FILES_PATH}{served.add(picture, rendered.fmt)}"
            else:
                item["b64_json"] = base64.b64encode(picture).decode("ascii")
            if family_of(job.model) == "dall-e-3" and job.prompt:
                item["revised_prompt"] = job.prompt
            data.append(item)
        body: dict[str, Any] = {"created": ctx.created, "data": data}
        if job.gpt:
            body.update(
                background="transparent" if job.background == "transparent" else "opaque",
                output_format=rendered.fmt,
                quality=_reported_quality(job.quality),
                size=f"{rendered.width}x{rendered.height}",
                usage=_usage(job, rendered, details=True),
            )
        return body

    def stream_frames(self, job: ImageJob, rendered: Rendered, ctx: MediaContext) -> Iterator[Frame]:
        """The partial-image events of each picture, then its completed event."""
        head = {
            "background": job.background,
            "created_at": ctx.created,
            "output_format": rendered.fmt,
            "quality": job.quality,
            "size": f"{rendered.width}x{rendered.height}",
        }
        usage = _usage(job, rendered, details=False)
        for picture, partials in zip(rendered.pictures, rendered.partials, strict=True):
            for index, partial in enumerate(partials):
                event = f"{self.event_prefix}.partial_image"
                b64 = base64.b64encode(partial).decode("ascii")
                payload = {"type": event, "b64_json": b64, **head, "partial_image_index": index}
                yield Frame(sse_event(event, payload), f"[partial image {index}]")
            event = f"{self.event_prefix}.completed"
            b64 = base64.b64encode(picture).decode("ascii")
            yield Frame(sse_event(event, {"type": event, "b64_json": b64, **head, "usage": usage}), "[image]")


def _reported_quality(quality: str) -> str:
    return "high" if quality == "auto" else quality


def _common(fields: dict[str, Any], model: str) -> dict[str, Any]:
    """The options the generation and edit endpoints share, checked for the model."""
    family = family_of(model)
    gpt = family == "gpt"
    n = form_int(fields, "n", 1, 10, 1) or 1
    if family == "dall-e-3" and n != 1:
        raise invalid_value("Invalid 'n': dall-e-3 only supports n=1.", "n")
    quality = one_of(form_str(fields, "quality", "auto"), QUALITIES[family], "quality")
    fmt = form_str(fields, "output_format")
    if fmt is not None and not gpt:
        raise invalid_value(f"'output_format' is only supported for GPT image models, not {model}.", "output_format")
    fmt = one_of(fmt or "png", OUTPUT_FORMATS, "output_format")
    if fmt in ("gif", "svg"):
        message = f"output_format '{fmt}' is not supported by mockllm-tui (png, jpeg, webp)."
        raise invalid_value(message, "output_format")
    compression = form_int(fields, "output_compression", 0, 100)
    if compression is not None and fmt == "png":
        message = "'output_compression' is only supported for the jpeg and webp output formats."
        raise invalid_value(message, "output_compression")
    background = one_of(form_str(fields, "background", "auto"), ("transparent", "opaque", "auto"), "background")
    if background == "transparent" and fmt == "jpeg":
        raise invalid_value("Transparent background is not supported for the jpeg output format.", "background")
    response_format = form_str(fields, "response_format")
    if response_format is not None:
        one_of(response_format, ("url", "b64_json"), "response_format")
        if gpt and response_format == "url":
            message = f"'response_format' url is not supported for {model}: it returns b64_json."
            raise invalid_value(message, "response_format")
    stream = form_bool(fields, "stream")
    if stream and not gpt:
        raise invalid_value(f"Streaming is only supported for GPT image models, not {model}.", "stream")
    partial = form_int(fields, "partial_images", 0, 3, 0) or 0
    if family == "dall-e-3":
        one_of(form_str(fields, "style", "vivid"), ("vivid", "natural"), "style")
    form_str(fields, "user")
    return {
        "n": n,
        "quality": quality,
        "fmt": fmt,
        "compression": compression,
        "background": background,
        "as_url": not gpt and response_format != "b64_json",
        "stream": stream,
        "partial_images": partial,
    }


def _prompt(fields: dict[str, Any], model: str) -> str:
    prompt = form_str(fields, "prompt", required=True) or ""
    limit = PROMPT_LIMITS[family_of(model)]
    if len(prompt) > limit:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}, "
            f"but got a string with length {len(prompt)} instead."
        )
        raise invalid_value(message, "prompt")
    return prompt


class Generations(ImageEndpoint):
    """`POST /v1/images/generations` (JSON)."""

    paths = ("/v1/images/generations", "/images/generations")
    name = "images.generations"

    def parse(self, fields: dict[str, Any], form: Form | None) -> ImageJob:
        """A generation: prompt, model and options."""
        model = form_str(fields, "model", "dall-e-2") or "dall-e-2"
        prompt = _prompt(fields, model)
        options = _common(fields, model)
        width, height = parse_size(model, form_str(fields, "size"))
        form_str(fields, "moderation")
        return ImageJob(self.name, model, prompt, width=width, height=height, **options)


def _checked_upload(upload: Upload, model: str, param: str) -> PictureInfo:
    """An uploaded picture, checked for the model (format and size)."""
    gpt = family_of(model) == "gpt"
    limit = GPT_UPLOAD_LIMIT if gpt else DALLE_UPLOAD_LIMIT
    if len(upload.data) > limit:
        message = f"Invalid image file: '{upload.filename}' is larger than {limit // (1024 * 1024)} MB."
        raise invalid_value(message, param)
    try:
        info = inspect_picture(upload.data, ("png", "jpeg", "webp") if gpt else ("png",))
    except ImageFormatError as exc:
        kinds = "png, webp or jpg" if gpt else "png"
        raise RequestError(
            f"Invalid image file or mode for image '{upload.filename}': {exc}. Supported: {kinds}.",
            param=param,
            code="invalid_image_format",
        ) from None
    if not gpt and info.width != info.height:
        raise invalid_value(f"Invalid image '{upload.filename}': it must be square, not {info.size}.", param)
    return info


class Edits(ImageEndpoint):
    """`POST /v1/images/edits` (multipart: one or more `image`s, an optional `mask`)."""

    paths = ("/v1/images/edits", "/images/edits")
    name = "images.edits"
    multipart = True
    event_prefix = "image_edit"

    def parse(self, fields: dict[str, Any], form: Form | None) -> ImageJob:
        """An edit: the pictures, the mask, the prompt and options."""
        assert form is not None
        model = form_str(fields, "model", "dall-e-2") or "dall-e-2"
        gpt = family_of(model) == "gpt"
        images = form.files.get("image") or []
        if not images:
            required_upload(form, "image")
        if len(images) > (MAX_EDIT_IMAGES if gpt else 1):
            raise invalid_value(f"Too many images: {model} takes at most {MAX_EDIT_IMAGES if gpt else 1}.", "image")
        infos = [_checked_upload(upload, model, "image") for upload in images]
        prompt = _prompt(fields, model)
        mask_upload = form.file("mask")
        mask = None
        if mask_upload is not None:
            try:
                mask_info = inspect_picture(mask_upload.data, ("png",))
            except ImageFormatError as exc:
                raise invalid_value(f"Invalid mask image: {exc}; the mask must be a PNG.", "mask") from None
            if (mask_info.width, mask_info.height) != (infos[0].width, infos[0].height):
                raise invalid_value(
                    f"Invalid mask: its size {mask_info.size} differs from the image's {infos[0].size}.", "mask"
                )
            mask = mask_upload.data
        options = _common(fields, model)
        width, height = parse_size(model, form_str(fields, "size"), auto_size(infos[0]))
        if form_str(fields, "input_fidelity") is not None:
            one_of(fields["input_fidelity"], ("high", "low"), "input_fidelity")
        return ImageJob(
            self.name, model, prompt, width=width, height=height, inputs=images, input_infos=infos, mask=mask, **options
        )


class Variations(ImageEndpoint):
    """`POST /v1/images/variations` (multipart: one square PNG; dall-e-2)."""

    paths = ("/v1/images/variations", "/images/variations")
    name = "images.variations"
    multipart = True

    def parse(self, fields: dict[str, Any], form: Form | None) -> ImageJob:
        """A variation: the picture, n, size and response format."""
        assert form is not None
        model = form_str(fields, "model", "dall-e-2") or "dall-e-2"
        if family_of(model) != "dall-e-2":
            raise invalid_value(f"Invalid model {model}: image variations are made by dall-e-2 only.", "model")
        upload = required_upload(form, "image")
        info = _checked_upload(upload, model, "image")
        n = form_int(fields, "n", 1, 10, 1) or 1
        response_format = one_of(form_str(fields, "response_format", "url"), ("url", "b64_json"), "response_format")
        width, height = parse_size(model, form_str(fields, "size"))
        form_str(fields, "user")
        return ImageJob(
            self.name,
            model,
            "",
            n=n,
            width=width,
            height=height,
            fmt="png",
            quality="standard",
            compression=None,
            background="opaque",
            as_url=response_format == "url",
            stream=False,
            partial_images=0,
            inputs=[upload],
            input_infos=[info],
        )


class ImageFile(MediaEndpoint):
    """`GET /v1/images/files/{name}`: a picture answered as a `url`, without auth, for an hour."""

    method = "GET"
    paths = (FILES_PATH + "{name}", "/images/files/{name}")
    name = "images.files"
    guarded = False

    def parse_media(self, request: Request) -> MediaJob:
        """The picture's name."""
        name = self.path_params(request.path).get("name", "")
        return MediaJob([], name, name)

    def answer(self, job: MediaJob, replies: list[Reply], ctx: MediaContext) -> MediaAnswer:
        """The picture's bytes with its content type, or 404."""
        found = _served(self).get(job.params)
        if found is None:
            raise RequestError(f"No image named {job.params!r} (images are served for an hour).", status=404)
        ctype, data = found
        return MediaAnswer(body=data, content_type=ctype.encode())


class OpenAIImages(OpenAIBase):
    """OpenAI's images endpoints."""

    name = "openai-images"
    endpoint_classes = (Generations, Edits, Variations, ImageFile)

    def __init__(self) -> None:
        super().__init__()
        self.served = ServedImages()


def _served(endpoint: Endpoint) -> ServedImages:
    provider = endpoint.provider
    assert isinstance(provider, OpenAIImages)
    return provider.served


register_provider(OpenAIImages)
