"""`multipart/form-data` request bodies (file uploads), parsed with python-multipart (the parser
Starlette uses). Repeated fields keep every value; `name[]` is read as `name`, as the SDKs send lists."""

from __future__ import annotations

from dataclasses import dataclass, field

from mockllm_tui.core.conversation import RequestError


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file: its field, file name, declared content type and bytes."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Form:
    """A parsed form: text fields and files, each under its name (without a trailing `[]`)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[Upload]] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        """The last value of a text field (None when absent)."""
        values = self.fields.get(name)
        return values[-1] if values else None

    def texts(self, name: str) -> list[str]:
        """Every value of a text field."""
        return self.fields.get(name, [])

    def file(self, name: str) -> Upload | None:
        """The first file under a name."""
        uploads = self.files.get(name)
        return uploads[0] if uploads else None


def _name(raw: bytes | None) -> str:
    name = (raw or b"").decode("utf-8", "replace")
    return name.removesuffix("[]")


def is_multipart(content_type: str) -> bool:
    """Whether a content type is `multipart/form-data`."""
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_form(body: bytes, content_type: str) -> Form:
    """A `multipart/form-data` body as a Form; RequestError when it is not one or is broken."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import Field, File, create_form_parser

    if not is_multipart(content_type):
        raise RequestError(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data. "
            "(HINT: If you're using curl, you can pass -H 'Content-Type: multipart/form-data')"
        )
    form = Form()

    def on_field(item: Field) -> None:
        value = (item.value or b"").decode("utf-8", "replace")
        form.fields.setdefault(_name(item.field_name), []).append(value)

    def on_file(item: File) -> None:
        item.file_object.seek(0)
        upload = Upload(
            field=_name(item.field_name),
            filename=(item.file_name or b"").decode("utf-8", "replace"),
            content_type=getattr(item, "content_type", None) or "",
            data=item.file_object.read(),
        )
        form.files.setdefault(upload.field, []).append(upload)

    config = {"MAX_MEMORY_FILE_SIZE": float("inf"), "MAX_BODY_SIZE": float("inf")}
    try:
        parser = create_form_parser({"Content-Type": content_type.encode("latin-1")}, on_field, on_file, config)
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise RequestError(f"the multipart body could not be parsed: {exc}") from None
    return form
