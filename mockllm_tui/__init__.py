"""mockllm-tui: a deterministic mock of LLM provider APIs with a live control panel."""

__version__ = "0.1.0"
