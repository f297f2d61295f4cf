"""mockllm-tui: a deterministic mock of the OpenAI and Anthropic APIs with a live control panel."""

__version__ = "0.1.0"
