"""Plain values and the one state store: knobs, conversations, the model registry, token counts,
the journal and its log lines. Imports nothing else from the package."""
