"""The provider registry: built-ins register with a decorator; plugins load from entry points,
`--plugin module` and `MOCKLLM_PLUGINS`."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

from mockllm_tui.providers.base import Provider

log = logging.getLogger("mockllm_tui")

ENTRY_POINT_GROUP = "mockllm_tui.providers"
BUILTIN_MODULES = (
    "mockllm_tui.providers.openai_chat",
    "mockllm_tui.providers.openai_responses",
    "mockllm_tui.providers.openai_misc",
    "mockllm_tui.providers.openai_images",
    "mockllm_tui.providers.openai_audio",
    "mockllm_tui.providers.openai_moderation",
    "mockllm_tui.providers.anthropic",
    "mockllm_tui.providers.ollama",
    "mockllm_tui.providers.azure",
    "mockllm_tui.providers.bedrock",
    "mockllm_tui.providers.gemini",
    "mockllm_tui.providers.openai_realtime",
    "mockllm_tui.providers.gemini_live",
)

_registry: dict[str, type[Provider]] = {}
plugin_errors: list[str] = []


def register_provider(cls: type[Provider]) -> type[Provider]:
    """Make a provider available by its `name` (also usable as a class decorator)."""
    if not cls.name:
        raise ValueError(f"provider class {cls.__name__} has no name")
    _registry[cls.name] = cls
    return cls


def unregister_provider(name: str) -> None:
    """Forget a registered provider (for a plugin's own tests)."""
    _registry.pop(name, None)


def _import_builtins() -> None:
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Import plugin modules (named, from MOCKLLM_PLUGINS, and from entry points).

    A plugin that fails is reported in one line and skipped. Returns those lines.
    """
    errors: list[str] = []
    names = [m.strip() for m in modules if m.strip()]
    names += [m.strip() for m in os.environ.get("MOCKLLM_PLUGINS", "").split(",") if m.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            errors.append(f"plugin {name!r} failed to load: {type(exc).__name__}: {exc}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Provider) and obj.name not in _registry:
                register_provider(obj)
        except Exception as exc:
            errors.append(f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}")
    for line in errors:
        log.warning(line)
    plugin_errors[:] = errors
    return errors


def build_providers(plugins: Iterable[str] = ()) -> list[Provider]:
    """Instances of every registered provider: built-ins in BUILTIN_MODULES order, then plugins."""
    _import_builtins()
    load_plugins(plugins)
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    classes = sorted(_registry.values(), key=lambda cls: rank.get(cls.__module__, len(rank)))
    return [cls() for cls in classes]
