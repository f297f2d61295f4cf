"""The model listing and lookup routes, for any wire format: a provider subclasses them and gives
the body's shape."""

from __future__ import annotations

from typing import Any

from mockllm_tui.core.models import ModelInfo
from mockllm_tui.providers.base import Endpoint, Query, Request


class ModelListing(Endpoint):
    """`GET .../models`: the registry in force, in the provider's listing shape."""

    method = "GET"
    name = "models.list"
    summary = "list models"

    def listing(self, models: list[ModelInfo]) -> Any:
        """The body for these models."""
        raise NotImplementedError

    def render_query(self, query: Query, request: Request) -> Any:
        """The listing."""
        return self.listing(request.models.models())


def model_in_path(request: Request) -> Query:
    """The model a `GET .../models/{id}` names, as the journal shows it."""
    name = request.path.rsplit("/", 1)[-1]
    return Query(model=name, preview=f"retrieve {name}")


class ModelLookup(Endpoint):
    """`GET .../models/{id}`: a known id or alias under the name asked for, else 404 `model_not_found`."""

    method = "GET"
    name = "models.retrieve"

    def describe(self, model: ModelInfo, name: str) -> Any:
        """The body for one model, under `name`."""
        raise NotImplementedError

    def parse_request(self, request: Request) -> Query:
        """The model the path names."""
        return model_in_path(request)

    def render_query(self, query: Query, request: Request) -> Any:
        """The model, or 404."""
        return self.describe(request.known_model(query.model), query.model)
