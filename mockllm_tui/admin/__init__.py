"""The admin API under `/_mock/`: another client of the store, like the panel."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from mockllm_tui.admin.errors import install_error_handlers
from mockllm_tui.admin.events import router as events_router
from mockllm_tui.admin.journal import router as journal_router
from mockllm_tui.admin.rules import router as rules_router
from mockllm_tui.admin.settings import router as settings_router
from mockllm_tui.admin.writes import refuse_unshared_writes
from mockllm_tui.core.store import Store
from mockllm_tui.providers.base import Provider


def install_admin(app: FastAPI, store: Store, providers: list[Provider], shape: Provider) -> None:
    """Mount every admin router on the app; errors take `shape`'s error format.

    The store and providers are `app.state.store` and `app.state.providers`. Every route refuses a
    change that cannot reach every process now (see writes.py).
    """
    app.state.store = store
    app.state.providers = providers

    install_error_handlers(app, shape)
    guard = [Depends(refuse_unshared_writes)]
    app.include_router(events_router, dependencies=guard)  # before the rules: `/rules/file` is not a rule's name
    app.include_router(journal_router, dependencies=guard)
    app.include_router(settings_router, dependencies=guard)
    app.include_router(rules_router, dependencies=guard)
