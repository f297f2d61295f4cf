"""Azure OpenAI: OpenAI's bodies on Azure's paths, with Azure's keys, errors, headers and
content-filter annotations.

- `/openai/deployments/{deployment}/chat/completions`, `/completions` and `/embeddings`, each with
  the `api-version` query parameter (without it: Azure's 404 "Resource not found"); the deployment
  in the path is the model that rules and the journal see;
- the v1 paths `/openai/v1/chat/completions`, `/completions`, `/embeddings` and `/models`, which
  take no `api-version` (the model is the body's);
- `POST /openai/responses`, `GET` and `DELETE /openai/responses/{id}` (with `api-version`, or under v1);
- `GET /openai/models[/{id}]?api-version=...`.

The key comes in `api-key` (what `openai.AzureOpenAI` sends) or `Authorization: Bearer`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from mockllm_tui.core.conversation import Conversation, Reply, RequestError
from mockllm_tui.core.models import ModelInfo
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    CLAIM_OWN,
    ChatEndpoint,
    Endpoint,
    Frame,
    Headers,
    Query,
    RateLimitReport,
    RenderContext,
    Request,
    bearer_token,
)
from mockllm_tui.providers.openai_chat import ChatCompletions, chat_limit_error
from mockllm_tui.providers.openai_common import OpenAIBase, openai_error, require
from mockllm_tui.providers.openai_misc import Completions, Embeddings, ListModels, RetrieveModel
from mockllm_tui.providers.openai_responses import (
    CreateResponse,
    DeleteResponse,
    KeepsResponses,
    ResponseById,
    SavedResponses,
    responses_limit_error,
)
from mockllm_tui.providers.registry import register_provider

API_VERSION = "api-version"
DEPLOYMENT = "/openai/deployments/{deployment}"
V1 = "/openai/v1"
REGION = b"East US"
#: Statuses Azure's gateway answers itself, as `{"error": {"code", "message"}}`; the rest pass
#: OpenAI's shape through.
GATEWAY_STATUSES = frozenset({401, 403, 404, 408, 429})
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)
SAFE = {"filtered": False, "severity": "safe"}
CHOICE_FILTER: dict[str, Any] = {
    "hate": SAFE,
    "protected_material_code": {"filtered": False, "detected": False},
    "protected_material_text": {"filtered": False, "detected": False},
    "self_harm": SAFE,
    "sexual": SAFE,
    "violence": SAFE,
}
PROMPT_FILTER: dict[str, Any] = {
    "hate": SAFE,
    "jailbreak": {"filtered": False, "detected": False},
    "self_harm": SAFE,
    "sexual": SAFE,
    "violence": SAFE,
}


def prompt_filter_results(count: int = 1) -> list[dict[str, Any]]:
    """Azure's `prompt_filter_results`: nothing filtered."""
    return [{"prompt_index": i, "content_filter_results": PROMPT_FILTER} for i in range(count)]


def deployment_in_path(endpoint: Endpoint, request: Request) -> str | None:
    """The deployment a request names in its path (None on a v1 path). A deployments path, like
    every path outside v1, needs `api-version`: without it Azure answers 404 "Resource not found"."""
    if not request.path.startswith(V1 + "/"):
        versions = parse_qs(request.query).get(API_VERSION)
        if not versions or not versions[0].strip():
            raise RequestError("Resource not found", status=404, code="404")
    return endpoint.path_params(request.path).get("deployment")


def azure_conversation(endpoint: ChatEndpoint, request: Request) -> Conversation:
    """The request parsed as OpenAI's, under this provider's name, with the deployment as the model."""
    deployment = deployment_in_path(endpoint, request)
    body = request.json()
    if deployment is not None:
        body = {**body, "model": deployment}  # the path rules; the body's model may be anything
    conversation = endpoint.parse(body)
    conversation.provider = endpoint.provider.name
    return conversation


def annotate(body: dict[str, Any], prompts: int = 1) -> dict[str, Any]:
    """A completion body with Azure's filter results: per prompt, and per choice."""
    body["prompt_filter_results"] = prompt_filter_results(prompts)
    for choice in body.get("choices", ()):
        choice["content_filter_results"] = CHOICE_FILTER
    return body


def filter_preface(head: dict[str, Any], prompts: int = 1) -> list[Frame]:
    """Azure's first chunk: no choices, the `prompt_filter_results`."""
    head = {**head, "choices": [], "prompt_filter_results": prompt_filter_results(prompts)}
    return [Frame(b"data: " + orjson.dumps(head) + b"\n\n")]


class AzureChat(ChatCompletions):
    """Chat completions on a deployment, or on the v1 path."""

    paths = (DEPLOYMENT + "/chat/completions", V1 + "/chat/completions")
    choice_extra = {"content_filter_results": CHOICE_FILTER}

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """As OpenAI's chat completions word it."""
        return chat_limit_error(breach)

    def parse_conversation(self, request: Request) -> Conversation:
        """OpenAI's request, on Azure's path."""
        return azure_conversation(self, request)

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """OpenAI's `chat.completion` with Azure's filter results."""
        return annotate(super().render(conversation, reply, ctx))

    def stream_preface(self, conversation: Conversation, head: dict[str, Any]) -> list[Frame]:
        """The prompt's filter results first (each chunk's choices carry theirs: `choice_extra`)."""
        return filter_preface(head)


class AzureCompletions(Completions):
    """Legacy completions on a deployment, or on the v1 path."""

    paths = (DEPLOYMENT + "/completions", V1 + "/completions")
    choice_extra = {"content_filter_results": CHOICE_FILTER}

    def parse_conversation(self, request: Request) -> Conversation:
        """OpenAI's request, on Azure's path."""
        return azure_conversation(self, request)

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """OpenAI's `text_completion` with Azure's filter results."""
        return annotate(super().render(conversation, reply, ctx), prompt_count(conversation))

    def stream_preface(self, conversation: Conversation, head: dict[str, Any]) -> list[Frame]:
        """The prompts' filter results first (each chunk's choices carry theirs: `choice_extra`)."""
        return filter_preface(head, prompt_count(conversation))


def prompt_count(conversation: Conversation) -> int:
    """How many prompts a legacy completion request sent."""
    return len(getattr(conversation, "prompts", ())) or 1


class AzureEmbeddings(Embeddings):
    """Embeddings on a deployment, or on the v1 path."""

    paths = (DEPLOYMENT + "/embeddings", V1 + "/embeddings")

    def request_model(self, request: Request, body: dict[str, Any]) -> str:
        """The deployment in the path, else the body's model."""
        deployment = deployment_in_path(self, request)
        return deployment if deployment is not None else str(require(body, "model", str))


class AzureResponses(CreateResponse):
    """`POST /openai/responses?api-version=...` and `POST /openai/v1/responses`."""

    paths = ("/openai/responses", V1 + "/responses")

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """As OpenAI's Responses API words it."""
        return responses_limit_error(breach)

    def parse_conversation(self, request: Request) -> Conversation:
        """OpenAI's request, on Azure's path."""
        return azure_conversation(self, request)


class AzureResponseById(ResponseById):
    """`GET /openai/responses/{id}?api-version=...` and `GET /openai/v1/responses/{id}`."""

    paths = ("/openai/responses/{id}", V1 + "/responses/{id}")

    def parse_request(self, request: Request) -> Query:
        """The kept response, once the path is Azure's."""
        deployment_in_path(self, request)
        return super().parse_request(request)


class AzureDeleteResponse(DeleteResponse):
    """`DELETE /openai/responses/{id}?api-version=...` and `DELETE /openai/v1/responses/{id}`."""

    paths = AzureResponseById.paths

    def parse_request(self, request: Request) -> Query:
        """The kept response, once the path is Azure's."""
        deployment_in_path(self, request)
        return super().parse_request(request)


def azure_model(model: ModelInfo, name: str | None = None) -> dict[str, Any]:
    """OpenAI's `Model` object with Azure's fields (`created_at`, `capabilities`, `lifecycle_status`)."""
    embeds = model.dimensions is not None
    return {
        "id": name or model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "created_at": model.created,
        "status": "succeeded",
        "lifecycle_status": "generally-available",
        "capabilities": {
            "chat_completion": not embeds,
            "completion": not embeds,
            "embeddings": embeds,
            "fine_tune": False,
            "inference": True,
        },
    }


class AzureListModels(ListModels):
    """`GET /openai/models?api-version=...` and `GET /openai/v1/models`."""

    paths = ("/openai/models", V1 + "/models")

    def parse_request(self, request: Request) -> Query:
        """Nothing to read, once the path is Azure's."""
        deployment_in_path(self, request)
        return super().parse_request(request)

    def listing(self, models: list[ModelInfo]) -> dict[str, Any]:
        """The registry as a list of Azure model objects."""
        return {"object": "list", "data": [azure_model(m, name) for m in models for name in m.names()]}


class AzureRetrieveModel(RetrieveModel):
    """`GET /openai/models/{id}?api-version=...` and `GET /openai/v1/models/{id}`."""

    paths = ("/openai/models/{id}", V1 + "/models/{id}")

    def parse_request(self, request: Request) -> Query:
        """The model the path names, once the path is Azure's."""
        deployment_in_path(self, request)
        return super().parse_request(request)

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """One model, under the name asked for (an unknown one is a plain 404, not a deployment's)."""
        try:
            model = request.known_model(query.model)
        except RequestError as exc:
            raise RequestError(exc.message, status=404, code="404") from None
        return azure_model(model, query.model)


class AzureOpenAI(OpenAIBase, KeepsResponses):
    """Azure OpenAI."""

    name = "azure"
    endpoint_classes = (
        AzureChat,
        AzureCompletions,
        AzureEmbeddings,
        AzureResponses,
        AzureResponseById,
        AzureDeleteResponse,
        AzureListModels,
        AzureRetrieveModel,
    )
    default_shape = False
    timing_header = None

    def __init__(self) -> None:
        self.saved = SavedResponses()
        super().__init__()

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Everything under `/openai/`."""
        return CLAIM_OWN if path.startswith("/openai/") else CLAIM_NONE

    def upstream_auth(self, key: str, *, method: str, url: str, body: bytes) -> Headers:
        """The key in `api-key`, as the AzureOpenAI client sends it."""
        return [(b"api-key", key.encode("latin-1"))]

    def presented_keys(self, headers: Mapping[str, str]) -> list[str]:
        """`api-key`, or `Authorization: Bearer` (Entra ID tokens and the v1 paths)."""
        keys = [headers["api-key"]] if headers.get("api-key") else []
        token = bearer_token(headers)
        return [*keys, token] if token else keys

    def auth_refusal(self, missing: bool) -> str:
        """Azure's wording for a missing or wrong key."""
        if missing:
            return (
                "Access denied due to missing subscription key. Make sure to include subscription key when "
                "making requests to an API."
            )
        return (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
            "key for an active subscription and use a correct regional API endpoint for your resource."
        )

    def error_body(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        request_id: str = "",
    ) -> bytes:
        """Azure's gateway errors as `{"error": {"code", "message"}}` (an unknown model is a
        `DeploymentNotFound`); everything else in OpenAI's shape, as Azure passes it through."""
        if code == "model_not_found":
            return orjson.dumps({"error": {"code": "DeploymentNotFound", "message": DEPLOYMENT_NOT_FOUND}})
        if status in GATEWAY_STATUSES and type is None:
            return orjson.dumps({"error": {"code": str(status), "message": message}})
        return orjson.dumps(openai_error(status, message, type=type, param=param, code=code))

    def response_headers(self, request_id: str) -> Headers:
        """`apim-request-id` (also sent back as `x-ms-client-request-id`), `x-request-id` and `x-ms-region`."""
        rid = request_id.encode()
        return [
            (b"apim-request-id", rid),
            (b"x-ms-client-request-id", rid),
            (b"x-request-id", rid),
            (b"x-ms-region", REGION),
        ]

    def request_id(self) -> str:
        """A UUID, as Azure's request ids are."""
        return str(uuid.uuid4())

    def rate_limit_headers(self, report: RateLimitReport) -> Headers:
        """`x-ratelimit-remaining-{requests,tokens}`: the only two Azure sends."""
        return [
            (b"x-ratelimit-remaining-requests", str(report.requests.remaining).encode()),
            (b"x-ratelimit-remaining-tokens", str(report.tokens.remaining).encode()),
        ]

    def retry_headers(self, status: int, wait_ms: float) -> Headers:
        """`retry-after` and `retry-after-ms`, as Azure sends them (no `x-should-retry`)."""
        return [(k, v) for k, v in super().retry_headers(status, wait_ms) if k != b"x-should-retry"]


register_provider(AzureOpenAI)
