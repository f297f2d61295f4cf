"""OpenAI's `POST /v1/moderations`: a result per input, every category scored, the rules flagging."""

from __future__ import annotations

from typing import Any

import orjson

from mockllm_tui.core.conversation import Reply, RequestError
from mockllm_tui.core.media import FLAG_THRESHOLD, IMAGE_CATEGORIES, MODERATION_CATEGORIES, media_request
from mockllm_tui.engine.moderation import verdict
from mockllm_tui.providers.base import Request, new_id
from mockllm_tui.providers.media import MediaAnswer, MediaContext, MediaEndpoint, MediaJob, RecordedMedia
from mockllm_tui.providers.openai_common import OpenAIBase
from mockllm_tui.providers.openai_media import PROVIDER, form_str, invalid_value, read_fields
from mockllm_tui.providers.registry import register_provider

DEFAULT_MODEL = "omni-moderation-latest"
MAX_INPUTS = 32


def moderation_inputs(value: Any) -> tuple[list[str], bool]:
    """The texts to judge, each on its own, and whether an image came with them. A string is one
    input, a list of strings one per string; a list of multi-modal parts is one input (its text
    parts joined by a newline)."""
    if value is None:
        raise RequestError("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(value, str):
        return [value], False
    if not isinstance(value, list) or not value:
        raise invalid_value("Invalid 'input': expected a string, an array of strings or of input objects.", "input")
    if len(value) > MAX_INPUTS:
        raise invalid_value(f"Invalid 'input': at most {MAX_INPUTS} inputs, got {len(value)}.", "input")
    if all(isinstance(v, str) for v in value):
        return list(value), False
    texts, image = [], False
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict) and part["image_url"].get("url"):
            image = True
        else:
            raise invalid_value(
                f"Invalid 'input[{i}]': expected {{type: text, text}} or {{type: image_url, image_url: {{url}}}}.",
                f"input[{i}]",
            )
    return ["\n".join(texts)], image


def result_object(text: str, flagged: dict[str, float] | None, *, has_text: bool, image: bool) -> dict[str, Any]:
    """One `Moderation` result."""
    judged = verdict(text, flagged)

    def applied(category: str) -> list[str]:
        kinds = ["text"] if has_text else []
        return [*kinds, "image"] if image and category in IMAGE_CATEGORIES else kinds

    return {
        "flagged": judged.any_flagged,
        "categories": {c: c in judged.flagged for c in MODERATION_CATEGORIES},
        "category_scores": judged.scores,
        "category_applied_input_types": {c: applied(c) for c in MODERATION_CATEGORIES},
    }


class Moderations(MediaEndpoint):
    """`POST /v1/moderations`."""

    paths = ("/v1/moderations", "/moderations")
    name = "moderations"
    operation = "moderation"

    def parse_media(self, request: Request) -> MediaJob:
        """The inputs, each judged by the rules on its own."""
        fields, _ = read_fields(request.headers, request.body, multipart=False)
        model = form_str(fields, "model", DEFAULT_MODEL) or DEFAULT_MODEL
        raw = fields.get("input")
        texts, image = moderation_inputs(raw)
        if image and not model.lower().startswith("omni-"):
            raise invalid_value(f"Image inputs are only supported by the omni-moderation models, not {model}.", "input")
        has_text = not isinstance(raw, list) or any(isinstance(p, str) or p.get("type") == "text" for p in raw)
        judged = [media_request(PROVIDER, self.name, model, text, "moderation") for text in texts]
        return MediaJob(judged, texts[0] or "[image]", {"texts": texts, "image": image, "has_text": has_text})

    def read_upstream(self, job: MediaJob, content_type: str, body: bytes) -> RecordedMedia | None:
        """The categories the upstream flagged for a single input, with their scores."""
        if len(job.requests) != 1:
            return None
        try:
            result = orjson.loads(body)["results"][0]
            categories, scores = result["categories"], result["category_scores"]
            flagged = {
                c: round(min(1.0, max(FLAG_THRESHOLD, float(scores[c]))), 4)
                for c in MODERATION_CATEGORIES
                if categories.get(c)
            }
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            return None
        return RecordedMedia(flagged=flagged)

    def answer(self, job: MediaJob, replies: list[Reply], ctx: MediaContext) -> MediaAnswer:
        """A result per input: the categories its rule flags (nothing without a rule)."""
        params = job.params
        results = [
            result_object(text, reply.flagged, has_text=params["has_text"], image=params["image"])
            for text, reply in zip(params["texts"], replies, strict=True)
        ]
        flagged = sorted({c for r in results for c, on in r["categories"].items() if on})
        body = {"id": new_id("modr-"), "model": job.model, "results": results}
        shown = "flagged: " + ", ".join(flagged) if flagged else "nothing flagged"
        return MediaAnswer(body=orjson.dumps(body), reply_text=shown)


class OpenAIModeration(OpenAIBase):
    """OpenAI's moderation endpoint."""

    name = "openai-moderation"
    endpoint_classes = (Moderations,)


register_provider(OpenAIModeration)
