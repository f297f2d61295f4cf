"""Pictures made up for a prompt: a colour field seeded by the prompt with its words drawn on it,
encoded with Pillow as PNG, JPEG or WebP; the edits and variations of uploaded pictures; and what
an uploaded picture is (format and size). Deterministic: the same inputs give the same bytes.

Pillow is imported on first use, so start-up does not pay for it.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ImageFormat = Literal["png", "jpeg", "webp"]
FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "webp")
#: Encoder quality (JPEG and WebP) for each requested quality, when no compression is given.
ENCODER_QUALITY = {"low": 50, "medium": 75, "high": 90, "auto": 90, "xhigh": 95, "max": 95}
#: The colour field is drawn this many cells across before it is smoothed up to the full size.
FIELD_CELLS = 6
#: The panel's preview of a picture is at most this many pixels a side.
THUMBNAIL_SIDE = 48
#: How coarse a partial image is (the pixel block side), per partial image still to come.
PARTIAL_COARSENESS = 16


class ImageFormatError(ValueError):
    """An upload that is not a picture Pillow can read in one of the accepted formats."""


@dataclass(frozen=True, slots=True)
class PictureInfo:
    """An encoded picture: its format (lower case, as Pillow names it), width, height and whether it
    has an alpha channel."""

    format: str
    width: int
    height: int
    alpha: bool

    @property
    def size(self) -> str:
        """`WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"


def seed_of(*parts: object) -> int:
    """A stable seed from any values (the same across runs and machines)."""
    text = "\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def inspect_picture(data: bytes, accepted: tuple[str, ...] = FORMATS) -> PictureInfo:
    """What an uploaded picture is, or ImageFormatError when it is not one of `accepted`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            fmt = (picture.format or "").lower()
            info = PictureInfo(
                fmt, picture.width, picture.height, "A" in picture.getbands() or "transparency" in picture.info
            )
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageFormatError(f"not a readable image ({exc})") from None
    if fmt not in accepted:
        raise ImageFormatError(f"an image in {fmt or 'an unknown format'} (expected {', '.join(accepted)})")
    return info


def draw_picture(prompt: str, width: int, height: int, seed: int, *, transparent: bool = False) -> PILImage:
    """A picture for a prompt: a smooth colour field from `seed`, a few shapes, the prompt's words."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    cells = Image.new("RGB", (FIELD_CELLS, FIELD_CELLS))
    cells.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(FIELD_CELLS**2)])
    picture = cells.resize((width, height), Image.Resampling.BICUBIC).convert("RGBA")
    shapes = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    pen = ImageDraw.Draw(shapes)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(width, height) // 16, max(width, height) // 4)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), 110)
        box = (x - r, y - r, x + r, y + r)
        if rng.random() < 0.5:
            pen.ellipse(box, fill=colour)
        else:
            pen.rectangle(box, fill=colour)
    picture = Image.alpha_composite(picture, shapes)
    write_words(picture, prompt)
    if transparent:
        mask = Image.new("L", (width, height), 0)
        inset = min(width, height) // 12
        ImageDraw.Draw(mask).rounded_rectangle((inset, inset, width - inset, height - inset), radius=inset, fill=255)
        picture.putalpha(mask)
    return picture


def write_words(picture: PILImage, text: str) -> None:
    """Draw the text's words across the middle of the picture, wrapped, white on a dark outline."""
    from PIL import ImageDraw, ImageFont

    words = " ".join(text.split())
    if not words:
        return
    width, height = picture.size
    size = max(10, min(width, height) // 14)
    font = ImageFont.load_default(size=size)
    columns = max(8, int(width * 0.85 / (size * 0.55)))
    lines = textwrap.wrap(words, columns)[:6]
    block = "\n".join(lines)
    pen = ImageDraw.Draw(picture)
    left, top, right, bottom = pen.multiline_textbbox((0, 0), block, font=font, stroke_width=2, align="center")
    x = (width - (right - left)) / 2 - left
    y = (height - (bottom - top)) / 2 - top
    pen.multiline_text(
        (x, y), block, font=font, fill=(255, 255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0, 255), align="center"
    )


def encode_picture(picture: PILImage, fmt: ImageFormat, quality: str = "auto", compression: int | None = None) -> bytes:
    """The picture in a format; `compression` (0-100, as the API counts it) or `quality` sets the
    JPEG and WebP encoder's quality. PNG and WebP keep transparency; JPEG has none."""
    out = io.BytesIO()
    level = ENCODER_QUALITY.get(quality, 90) if compression is None else max(1, compression)
    if fmt == "jpeg":
        picture.convert("RGB").save(out, "JPEG", quality=level)
    elif fmt == "webp":
        picture.save(out, "WEBP", quality=level, method=0)
    else:
        picture.save(out, "PNG", compress_level=1)
    return out.getvalue()


def open_picture(data: bytes) -> PILImage:
    """An uploaded picture, decoded, as RGBA."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGBA")


def edited_picture(
    prompt: str, base: bytes, mask: bytes | None, width: int, height: int, seed: int, *, transparent: bool = False
) -> PILImage:
    """An edit: the first upload at the output size, its masked (transparent) part, or the whole of it
    when there is no mask, painted over with the prompt's picture, seen through at half strength."""
    from PIL import Image

    original = open_picture(base).resize((width, height), Image.Resampling.BICUBIC)
    drawn = draw_picture(prompt, width, height, seed, transparent=transparent)
    if mask is None:
        return Image.blend(original, drawn, 0.6)
    alpha = open_picture(mask).resize((width, height)).getchannel("A")
    holes = alpha.point(lambda a: 255 if a == 0 else 0)
    original.paste(drawn, (0, 0), holes)
    return original


def varied_picture(base: bytes, width: int, height: int, seed: int) -> PILImage:
    """A variation: the upload at the output size, tinted and mixed with a colour field from `seed`."""
    from PIL import Image

    original = open_picture(base).resize((width, height), Image.Resampling.BICUBIC)
    return Image.blend(original, draw_picture("", width, height, seed), 0.35)


def partial_pictures(picture: PILImage, count: int) -> list[PILImage]:
    """`count` partial images leading up to the picture: coarse, then finer and finer."""
    from PIL import Image

    width, height = picture.size
    out = []
    for i in range(count):
        scale = PARTIAL_COARSENESS * (count - i)
        small = picture.resize((max(1, width // scale), max(1, height // scale)), Image.Resampling.BOX)
        out.append(small.resize((width, height), Image.Resampling.BICUBIC))
    return out


def thumbnail(picture: PILImage | bytes, side: int = THUMBNAIL_SIDE) -> tuple[int, int, bytes]:
    """A small RGB copy of a picture (at most `side` pixels a side), for the panel's preview."""
    small = open_picture(picture) if isinstance(picture, bytes) else picture.convert("RGBA")
    small.thumbnail((side, side))
    return small.width, small.height, small.convert("RGB").tobytes()


def image_output_tokens(width: int, height: int, quality: str) -> int:
    """Output tokens of one generated picture, as GPT Image bills them (by quality and area)."""
    per_megapixel = {"low": 272, "medium": 1056, "high": 4160}.get(quality, 1056)
    return max(1, round(per_megapixel * width * height / (1024 * 1024)))


def image_input_tokens(width: int, height: int) -> int:
    """Input tokens of one uploaded picture: a base plus a share per 512-pixel tile."""
    tiles = -(-width // 512) * -(-height // 512)
    return 65 + 129 * tiles
