"""deadrelu patch: rewrite dead ReLU / ReLU6 activations, then re-scan and measure the drift.

Passes, one module each: ``plan`` (which sites, into what) → a rewrite of a copy
(``torch_graph`` for .pt2, ``torch_modules`` for pickled modules, ``onnx_rewrite``) → optional
bias compensation → atomic write → ``verify`` (re-scan, output drift) → ``record``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["patch"]


def __getattr__(name: str) -> object:
    if name == "patch":  # pulls in torch: keep `import deadrelu.patch` light
        from deadrelu.patch.api import patch

        return patch
    raise AttributeError(name)


class _CallablePackage(types.ModuleType):
    """Importing ``deadrelu.patch.*`` makes the attribute ``deadrelu.patch`` this package
    rather than the function; calling the package calls the function, so
    ``deadrelu.patch(model, data, output=...)`` works either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from deadrelu.patch.api import patch

        return patch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
