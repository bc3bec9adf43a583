"""Base of the recipe schema: the strict config class, the recipe error and the config hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class RecipeError(ValueError):
    """A recipe that cannot be found, parsed or validated. The message names the file and field."""


class Strict(BaseModel):
    """Base for config classes: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    _omit_at_default: ClassVar[frozenset[str]] = frozenset()
    """Fields added after run folders already existed: left out of dumps while at their default, so a
    stage's config hash (its reuse key) does not change for recipes that do not use them."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._omit_at_default:
            if name in data and getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                del data[name]
        return data



def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able value (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
