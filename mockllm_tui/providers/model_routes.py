"""The model listing and lookup routes, for any wire format: a provider subclasses them and gives
the body's shape."""

from __future__ import annotations

from typing import Any

from mockllm_tui.core.models import ModelInfo
from mockllm_tui.engine.answer import model_in_path
from mockllm_tui.engine.exchange import Exchange
from mockllm_tui.providers.base import Endpoint


class ModelListing(Endpoint):
    """`GET .../models`: the registry in force, in the provider's listing shape."""

    method = "GET"
    name = "models.list"

    def listing(self, models: list[ModelInfo]) -> Any:
        """The body for these models."""
        raise NotImplementedError

    async def handle(self, ex: Exchange) -> None:
        """Send the listing."""
        ex.entry.preview = "list models"
        await ex.send_json(200, self.listing(ex.store.models.models()))


class ModelLookup(Endpoint):
    """`GET .../models/{id}`: a known id or alias under the name asked for, else 404 `model_not_found`."""

    method = "GET"
    name = "models.retrieve"

    def describe(self, model: ModelInfo, name: str) -> Any:
        """The body for one model, under `name`."""
        raise NotImplementedError

    async def handle(self, ex: Exchange) -> None:
        """Send the model, or 404."""
        name, model = model_in_path(ex)
        await ex.send_json(200, self.describe(model, name))
