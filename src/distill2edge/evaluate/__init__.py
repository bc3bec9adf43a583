"""distill2edge.evaluate: answer QA sets with models and score the answers (metrics, judges, generation).

`distill2edge.evaluate` is also the public API's `evaluate` function (`distill2edge.api.evaluate`, what
`distill2edge evaluate` runs): a package attribute is replaced by its subpackage as soon as the
subpackage is imported, so this module is made callable instead of the two fighting over the name.
`distill2edge.evaluate(models, out, ...)` and `from distill2edge import evaluate; evaluate(...)` both
run the API function; `distill2edge.evaluate.registry` and the other modules import as usual.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`distill2edge.api.evaluate(*args, **kwargs)`."""
        from distill2edge.api import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
