"""deadrelu: how much of my network is dead?

The library under the ``deadrelu`` command. ``scan()`` runs data through a model and returns a
:class:`ScanResult` with exact per-site dead-neuron and saturation statistics.
"""

from __future__ import annotations

__version__ = "0.1.0"

from deadrelu.errors import DeadReluError
from deadrelu.stats import Settings

__all__ = ["DeadReluError", "ScanResult", "Settings", "__version__", "patch", "scan"]


def __getattr__(name: str) -> object:
    # scan() and ScanResult pull in torch; keep `import deadrelu` (and --help) fast.
    if name == "scan":
        from deadrelu.scanner import scan

        return scan
    if name == "patch":
        from deadrelu.patch.api import patch

        return patch
    if name == "ScanResult":
        from deadrelu.report.model import ScanResult

        return ScanResult
    raise AttributeError(name)
