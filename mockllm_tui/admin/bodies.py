"""The admin API's request bodies, as pydantic models.

A body is read as JSON whatever its content type says (as `curl -d` sends it), and an empty body
is an empty object. A body that does not validate raises pydantic's `ValidationError`, which the
admin API answers with a 400 naming the field (see errors.py).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, model_validator

from mockllm_tui.core.knobs import ErrorMode

T = TypeVar("T")

MOVE_OR_ORDER = 'expected {"id": RULE, "index": N} or {"order": [RULE, ...]}'


class FailNext(BaseModel):
    """`POST /_mock/fail-next`: fail the next `count` model requests with `status` and `mode`."""

    count: StrictInt = Field(1, ge=0)
    status: StrictInt | None = Field(None, ge=400, le=599)
    mode: ErrorMode | None = None


class NewRule(BaseModel):
    """`POST /_mock/rules`: a rule in the file's rich form, and where to put it."""

    model_config = ConfigDict(extra="allow")

    index: StrictInt | None = None


class Reorder(BaseModel):
    """`POST /_mock/rules/reorder`: move one rule (`id`, `index`) or give the whole `order`; a rule is
    named by its identity (its name, or `#N`; a number is a position)."""

    id: StrictStr | StrictInt | None = None
    index: StrictInt | None = None
    order: list[StrictStr | StrictInt] | None = None

    @model_validator(mode="after")
    def one_form(self) -> Reorder:
        """Either the whole order, or an id and its new index."""
        if self.order is None and (self.id is None or self.index is None):
            raise ValueError(MOVE_OR_ORDER)
        return self


#: `PATCH /_mock/settings` and the rule bodies (validated by the rules' own checks): any object.
ANY_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
FAIL_NEXT = TypeAdapter(FailNext)
NEW_RULE = TypeAdapter(NewRule)
REORDER = TypeAdapter(Reorder)


async def read_body(request: Request, adapter: TypeAdapter[T]) -> T:
    """The request body validated by `adapter` (raises pydantic's ValidationError)."""
    raw = await request.body()
    return adapter.validate_json(raw.strip() or b"{}")
