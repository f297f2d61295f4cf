"""The model registry: the models `/v1/models` lists, their aliases, owners and limits.

Any model is served by default; a registry with `strict` set makes unknown models a 404
`model_not_found`. The store holds the registry in force (`store.set_models`); without one the
defaults apply. Replies echo the model as the client asked for it (and `{{model}}` is that name).

Limits (context window, output and input limits, in tokens of the local estimate) come from the
providers' published figures; a model without them has no limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mockllm_tui.core.conversation import RequestError


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model: its id, the aliases that resolve to it, its owner and creation time (unix s), and
    its limits: context window, most output tokens, most input tokens (None: no limit) and whether it
    reasons (thinks before it answers) by default."""

    id: str
    owned_by: str = "system"
    created: int = 1700000000
    aliases: tuple[str, ...] = ()
    dimensions: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    max_input_tokens: int | None = None
    reasoning: bool = False

    def names(self) -> tuple[str, ...]:
        """Its id, then its aliases."""
        return (self.id, *self.aliases)


@dataclass(frozen=True, slots=True)
class Limits:
    """A model's published limits: context window, most output tokens, a separate input limit, reasoning."""

    window: int | None
    output: int | None = None
    input: int | None = None
    reasoning: bool = False


_GPT5 = Limits(400_000, 128_000, 272_000, reasoning=True)
_GPT41 = Limits(1_047_576, 32_768)
_GPT4O = Limits(128_000, 16_384)
_O_SERIES = Limits(200_000, 100_000, reasoning=True)
_EMBEDDING = Limits(8_192)

#: Published limits by model id (gpt-5.5 and the Claude 5.5 and 4.6 models: their families' figures).
PUBLISHED_LIMITS: dict[str, Limits] = {
    "gpt-5.5-2026-04-23": _GPT5,
    "gpt-5-2025-08-07": _GPT5,
    "gpt-5-mini-2025-08-07": _GPT5,
    "gpt-5-nano-2025-08-07": _GPT5,
    "gpt-4.1-2025-04-14": _GPT41,
    "gpt-4.1-mini-2025-04-14": _GPT41,
    "gpt-4.1-nano-2025-04-14": _GPT41,
    "gpt-4o-2024-08-06": _GPT4O,
    "gpt-4o-mini-2024-07-18": _GPT4O,
    "gpt-4-turbo-2024-04-09": Limits(128_000, 4_096),
    "gpt-3.5-turbo-0125": Limits(16_385, 4_096),
    "gpt-3.5-turbo-instruct": Limits(4_096, 4_096),
    "o3-2025-04-16": _O_SERIES,
    "o3-mini-2025-01-31": _O_SERIES,
    "o4-mini-2025-04-16": _O_SERIES,
    "text-embedding-3-small": _EMBEDDING,
    "text-embedding-3-large": _EMBEDDING,
    "text-embedding-ada-002": _EMBEDDING,
    "claude-opus-5-5": Limits(200_000, 128_000),
    "claude-sonnet-5-5": Limits(200_000, 64_000),
    "claude-haiku-5-5": Limits(200_000, 64_000),
    "claude-opus-4-6": Limits(200_000, 128_000),
    "claude-sonnet-4-6": Limits(200_000, 64_000),
    "claude-opus-4-1-20250805": Limits(200_000, 32_000),
    "claude-opus-4-20250514": Limits(200_000, 32_000),
    "claude-sonnet-4-5-20250929": Limits(200_000, 64_000),
    "claude-sonnet-4-20250514": Limits(200_000, 64_000),
    "claude-haiku-4-5-20251001": Limits(200_000, 64_000),
    "claude-3-7-sonnet-20250219": Limits(200_000, 64_000),
    "claude-3-5-haiku-20241022": Limits(200_000, 8_192),
    "claude-3-5-sonnet-20241022": Limits(200_000, 8_192),
    "claude-3-haiku-20240307": Limits(200_000, 4_096),
    "gemini-3-pro-preview": Limits(1_048_576, 65_536),
    "gemini-2.5-pro": Limits(1_048_576, 65_536),
    "gemini-2.5-flash": Limits(1_048_576, 65_536),
    "gemini-2.5-flash-lite": Limits(1_048_576, 65_536),
    "gemini-2.0-flash": Limits(1_048_576, 8_192),
    "gemini-2.0-flash-lite": Limits(1_048_576, 8_192),
    "gemini-embedding-001": Limits(2_048),
    "text-embedding-004": Limits(2_048),
    # Ollama: the models' own context lengths; a local server has no separate output limit.
    "llama3.2:latest": Limits(131_072, 131_072),
    "llama3.1:8b": Limits(131_072, 131_072),
    "qwen3:8b": Limits(40_960, 40_960),
    "gemma3:latest": Limits(131_072, 131_072),
    "gpt-oss:20b": Limits(131_072, 131_072),
    "mistral:latest": Limits(32_768, 32_768),
    "deepseek-r1:8b": Limits(131_072, 131_072),
    "nomic-embed-text:latest": Limits(2_048),
    "all-minilm:latest": Limits(512),
    # Bedrock: the same models' figures as their makers publish them.
    "anthropic.claude-opus-4-6-v1": Limits(200_000, 128_000),
    "anthropic.claude-sonnet-4-6": Limits(200_000, 64_000),
    "anthropic.claude-opus-4-1-20250805-v1:0": Limits(200_000, 32_000),
    "anthropic.claude-opus-4-20250514-v1:0": Limits(200_000, 32_000),
    "anthropic.claude-sonnet-4-5-20250929-v1:0": Limits(200_000, 64_000),
    "anthropic.claude-sonnet-4-20250514-v1:0": Limits(200_000, 64_000),
    "anthropic.claude-haiku-4-5-20251001-v1:0": Limits(200_000, 64_000),
    "anthropic.claude-3-7-sonnet-20250219-v1:0": Limits(200_000, 64_000),
    "anthropic.claude-3-5-haiku-20241022-v1:0": Limits(200_000, 8_192),
    "anthropic.claude-3-haiku-20240307-v1:0": Limits(200_000, 4_096),
    "amazon.nova-premier-v1:0": Limits(1_000_000, 10_000),
    "amazon.nova-pro-v1:0": Limits(300_000, 10_000),
    "amazon.nova-lite-v1:0": Limits(300_000, 10_000),
    "amazon.nova-micro-v1:0": Limits(128_000, 10_000),
    "meta.llama3-3-70b-instruct-v1:0": Limits(128_000, 8_192),
    "meta.llama4-maverick-17b-instruct-v1:0": Limits(1_000_000, 8_192),
    "mistral.mistral-large-2407-v1:0": Limits(128_000, 8_192),
    "deepseek.r1-v1:0": Limits(128_000, 32_768),
    "openai.gpt-oss-120b-1:0": Limits(128_000, 128_000),
}


def _m(id: str, created: int, *aliases: str, owned_by: str = "system", dimensions: int | None = None) -> ModelInfo:
    limits = PUBLISHED_LIMITS.get(id, Limits(None))
    return ModelInfo(
        id=id,
        owned_by=owned_by,
        created=created,
        aliases=aliases,
        dimensions=dimensions,
        context_window=limits.window,
        max_output_tokens=limits.output,
        max_input_tokens=limits.input,
        reasoning=limits.reasoning,
    )


DEFAULT_MODELS: tuple[ModelInfo, ...] = (
    _m("gpt-5.5-2026-04-23", 1776902400, "gpt-5.5"),
    _m("gpt-5-2025-08-07", 1754425777, "gpt-5"),
    _m("gpt-5-mini-2025-08-07", 1754425867, "gpt-5-mini"),
    _m("gpt-5-nano-2025-08-07", 1754426303, "gpt-5-nano"),
    _m("gpt-4.1-2025-04-14", 1744315746, "gpt-4.1"),
    _m("gpt-4.1-mini-2025-04-14", 1744317547, "gpt-4.1-mini"),
    _m("gpt-4.1-nano-2025-04-14", 1744321025, "gpt-4.1-nano"),
    _m("gpt-4o-2024-08-06", 1722814719, "gpt-4o"),
    _m("gpt-4o-mini-2024-07-18", 1721172717, "gpt-4o-mini"),
    _m("gpt-4-turbo-2024-04-09", 1712601677, "gpt-4-turbo"),
    _m("gpt-3.5-turbo-0125", 1706048358, "gpt-3.5-turbo", owned_by="openai"),
    _m("gpt-3.5-turbo-instruct", 1692901427, owned_by="openai"),
    _m("o3-2025-04-16", 1744133301, "o3"),
    _m("o3-mini-2025-01-31", 1738010200, "o3-mini"),
    _m("o4-mini-2025-04-16", 1744133506, "o4-mini"),
    _m("text-embedding-3-small", 1705948997, dimensions=1536),
    _m("text-embedding-3-large", 1705953180, dimensions=3072),
    _m("text-embedding-ada-002", 1671217299, owned_by="openai-internal", dimensions=1536),
    _m("claude-opus-5-5", 1780000000, owned_by="anthropic"),
    _m("claude-sonnet-5-5", 1780000000, owned_by="anthropic"),
    _m("claude-haiku-5-5", 1780000000, owned_by="anthropic"),
    _m("claude-opus-4-6", 1770000000, owned_by="anthropic"),
    _m("claude-sonnet-4-6", 1770000000, owned_by="anthropic"),
    _m("claude-opus-4-1-20250805", 1754352000, "claude-opus-4-1", owned_by="anthropic"),
    _m("claude-opus-4-20250514", 1747180800, "claude-opus-4-0", owned_by="anthropic"),
    _m("claude-sonnet-4-5-20250929", 1759104000, "claude-sonnet-4-5", owned_by="anthropic"),
    _m("claude-sonnet-4-20250514", 1747180800, "claude-sonnet-4-0", owned_by="anthropic"),
    _m("claude-haiku-4-5-20251001", 1759276800, "claude-haiku-4-5", owned_by="anthropic"),
    _m("claude-3-7-sonnet-20250219", 1739923200, "claude-3-7-sonnet-latest", owned_by="anthropic"),
    _m("claude-3-5-haiku-20241022", 1729555200, "claude-3-5-haiku-latest", owned_by="anthropic"),
    _m("claude-3-5-sonnet-20241022", 1729555200, "claude-3-5-sonnet-latest", owned_by="anthropic"),
    _m("claude-3-haiku-20240307", 1709769600, owned_by="anthropic"),
    _m("llama3.2:latest", 1727136000, "llama3.2", owned_by="library"),
    _m("llama3.1:8b", 1721606400, "llama3.1", owned_by="library"),
    _m("qwen3:8b", 1745884800, "qwen3", owned_by="library"),
    _m("gemma3:latest", 1741737600, "gemma3", owned_by="library"),
    _m("gpt-oss:20b", 1754352000, "gpt-oss", owned_by="library"),
    _m("mistral:latest", 1721001600, "mistral", owned_by="library"),
    _m("deepseek-r1:8b", 1748390400, "deepseek-r1", owned_by="library"),
    _m("nomic-embed-text:latest", 1708300800, "nomic-embed-text", owned_by="library", dimensions=768),
    _m("all-minilm:latest", 1712620800, "all-minilm", owned_by="library", dimensions=384),
    # Bedrock model ids, with their cross-region inference profiles as aliases.
    _m(
        "anthropic.claude-opus-4-6-v1",
        1770000000,
        "us.anthropic.claude-opus-4-6-v1",
        "eu.anthropic.claude-opus-4-6-v1",
        "global.anthropic.claude-opus-4-6-v1",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-sonnet-4-6",
        1770000000,
        "us.anthropic.claude-sonnet-4-6",
        "eu.anthropic.claude-sonnet-4-6",
        "global.anthropic.claude-sonnet-4-6",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-opus-4-1-20250805-v1:0",
        1754352000,
        "us.anthropic.claude-opus-4-1-20250805-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-opus-4-20250514-v1:0",
        1747180800,
        "us.anthropic.claude-opus-4-20250514-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        1759104000,
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-sonnet-4-20250514-v1:0",
        1747180800,
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "eu.anthropic.claude-sonnet-4-20250514-v1:0",
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        1759276800,
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        1739923200,
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        1729555200,
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        owned_by="bedrock",
    ),
    _m(
        "anthropic.claude-3-haiku-20240307-v1:0",
        1709769600,
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "eu.anthropic.claude-3-haiku-20240307-v1:0",
        owned_by="bedrock",
    ),
    _m("amazon.nova-premier-v1:0", 1743465600, "us.amazon.nova-premier-v1:0", owned_by="bedrock"),
    _m("amazon.nova-pro-v1:0", 1733270400, "us.amazon.nova-pro-v1:0", "eu.amazon.nova-pro-v1:0", owned_by="bedrock"),
    _m("amazon.nova-lite-v1:0", 1733270400, "us.amazon.nova-lite-v1:0", "eu.amazon.nova-lite-v1:0", owned_by="bedrock"),
    _m(
        "amazon.nova-micro-v1:0",
        1733270400,
        "us.amazon.nova-micro-v1:0",
        "eu.amazon.nova-micro-v1:0",
        owned_by="bedrock",
    ),
    _m("meta.llama3-3-70b-instruct-v1:0", 1734566400, "us.meta.llama3-3-70b-instruct-v1:0", owned_by="bedrock"),
    _m(
        "meta.llama4-maverick-17b-instruct-v1:0",
        1745798400,
        "us.meta.llama4-maverick-17b-instruct-v1:0",
        owned_by="bedrock",
    ),
    _m("mistral.mistral-large-2407-v1:0", 1721779200, owned_by="bedrock"),
    _m("deepseek.r1-v1:0", 1741651200, "us.deepseek.r1-v1:0", owned_by="bedrock"),
    _m("openai.gpt-oss-120b-1:0", 1754352000, owned_by="bedrock"),
    _m("gemini-3-pro-preview", 1763424000, owned_by="google"),
    _m("gemini-2.5-pro", 1750118400, "gemini-pro-latest", owned_by="google"),
    _m("gemini-2.5-flash", 1750118400, "gemini-flash-latest", owned_by="google"),
    _m("gemini-2.5-flash-lite", 1753142400, "gemini-flash-lite-latest", owned_by="google"),
    _m("gemini-2.0-flash", 1738713600, "gemini-2.0-flash-001", owned_by="google"),
    _m("gemini-2.0-flash-lite", 1740441600, "gemini-2.0-flash-lite-001", owned_by="google"),
    _m("gemini-embedding-001", 1752537600, owned_by="google", dimensions=3072),
    _m("text-embedding-004", 1715731200, owned_by="google", dimensions=768),
)

DEFAULT_EMBEDDING_DIMENSIONS = 1536
LIMIT_KEYS = ("context_window", "max_output_tokens", "max_input_tokens")
MODEL_KEYS = frozenset({"id", "aliases", "owned_by", "created", "dimensions", *LIMIT_KEYS, "reasoning"})


class ModelEntryError(ValueError):
    """A bad `models:` entry; `index` is its place in the list and `key` the offending key (if one)."""

    def __init__(self, message: str, index: int | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.key = key


class ModelRegistry:
    """Models by id and alias. `strict`: unknown models are refused (404 `model_not_found`)."""

    def __init__(self, models: Iterable[ModelInfo] = DEFAULT_MODELS, *, strict: bool = False) -> None:
        self.strict = strict
        self._models: dict[str, ModelInfo] = {}
        self._names: dict[str, ModelInfo] = {}
        for model in models:
            self.add(model)

    def add(self, model: ModelInfo) -> None:
        """Add (or replace) a model and its aliases."""
        old = self._models.pop(model.id, None)
        if old is not None:
            for name in (old.id, *old.aliases):
                self._names.pop(name, None)
        self._models[model.id] = model
        for name in (model.id, *model.aliases):
            self._names[name] = model

    def resolve(self, name: str) -> ModelInfo | None:
        """The model an id or alias names, or None when it is unknown."""
        return self._names.get(name)

    def names(self) -> list[str]:
        """Every id and alias, in registry order (aliases after their model's id)."""
        return [name for model in self._models.values() for name in (model.id, *model.aliases)]

    def models(self) -> list[ModelInfo]:
        """The models, in registry order."""
        return list(self._models.values())

    def with_strict(self, strict: bool) -> ModelRegistry:
        """A copy with the `strict` flag set as given."""
        return ModelRegistry(self._models.values(), strict=strict)

    @classmethod
    def from_config(cls, entries: list[Any], *, strict: bool = False, include_defaults: bool = True) -> ModelRegistry:
        """A registry from a file's `models:` list, added to (and overriding) the defaults.

        Each entry is an id string or a mapping with `id` and optional `aliases` (a string or list),
        `owned_by`, `created`, `dimensions`, `context_window`, `max_output_tokens`, `max_input_tokens`
        and `reasoning`. An entry naming a known model keeps the limits it does not set. Raises
        ModelEntryError (a ValueError) naming the bad entry.
        """
        registry = cls(DEFAULT_MODELS if include_defaults else (), strict=strict)
        if not isinstance(entries, list):
            raise ModelEntryError("models: expected a list of models")
        for index, entry in enumerate(entries):
            registry.add(_model_from_entry(entry, index, registry))
        return registry


def _positive(entry: dict[str, Any], key: str, where: str, index: int, default: int | None) -> int | None:
    value = entry.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ModelEntryError(f"{where}.{key}: expected a positive integer, not {value!r}", index, key)
    return value


def _model_from_entry(entry: Any, index: int, known: ModelRegistry) -> ModelInfo:
    where = f"models[{index}]"
    if isinstance(entry, str) and entry:
        return ModelInfo(id=entry)
    if not isinstance(entry, dict):
        raise ModelEntryError(f"{where}: expected a model id or a mapping with an id", index)
    unknown = sorted(set(entry) - MODEL_KEYS)
    if unknown:
        message = f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(MODEL_KEYS))})"
        raise ModelEntryError(message, index, unknown[0])
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise ModelEntryError(f"{where}.id: expected a non-empty string", index, "id")
    aliases = entry.get("aliases", [])
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ModelEntryError(f"{where}.aliases: expected a string or a list of strings", index, "aliases")
    owned_by = entry.get("owned_by", "system")
    if not isinstance(owned_by, str):
        raise ModelEntryError(f"{where}.owned_by: expected a string", index, "owned_by")
    created = entry.get("created", 1700000000)
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise ModelEntryError(f"{where}.created: expected unix seconds (a non-negative integer)", index, "created")
    base = known.resolve(model_id) or ModelInfo(id=model_id)
    reasoning = entry.get("reasoning", base.reasoning)
    if not isinstance(reasoning, bool):
        raise ModelEntryError(f"{where}.reasoning: expected true or false, not {reasoning!r}", index, "reasoning")
    return ModelInfo(
        id=model_id,
        owned_by=owned_by,
        created=created,
        aliases=tuple(aliases),
        dimensions=_positive(entry, "dimensions", where, index, None),
        context_window=_positive(entry, "context_window", where, index, base.context_window),
        max_output_tokens=_positive(entry, "max_output_tokens", where, index, base.max_output_tokens),
        max_input_tokens=_positive(entry, "max_input_tokens", where, index, base.max_input_tokens),
        reasoning=reasoning,
    )


_DEFAULT_REGISTRY = ModelRegistry()


def default_registry() -> ModelRegistry:
    """The built-in registry (not strict)."""
    return _DEFAULT_REGISTRY


def model_not_found(name: str) -> RequestError:
    """The 404 for an unknown model (`model_not_found`, as the OpenAI API words it)."""
    return RequestError(
        f"The model `{name}` does not exist or you do not have access to it.",
        status=404,
        param="model",
        code="model_not_found",
    )


def check_model(registry: ModelRegistry, name: str, *, strict: bool = False) -> None:
    """Raise a 404 `model_not_found` RequestError when models are strict (the registry's flag or
    `strict`, from `--strict-models`) and `name` is unknown."""
    if (registry.strict or strict) and registry.resolve(name) is None:
        raise model_not_found(name)
