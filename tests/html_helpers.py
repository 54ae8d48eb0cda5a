"""Reports for the HTML tests: synthetic scans of any size, with planted dead neurons."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from deadrelu.backends.sites import SiteInfo, SiteResult
from deadrelu.report.model import DataInfo, ModelInfo, ScanResult
from deadrelu.stats import NeuronStats, Settings


def site_stats(neurons: int, dead: np.ndarray, rng: np.random.Generator,
               samples: int = 100, elements: int = 400) -> NeuronStats:
    """Accumulators of a ReLU site where exactly the ``dead`` indices never fire."""
    stats = NeuronStats.zeros(neurons)
    a = stats.arrays
    active = rng.integers(1, elements, neurons)
    active[dead] = 0
    a["active"][:] = active
    a["positive"][:] = active
    a["active_samples"][:] = np.minimum(active, samples)
    a["finite"][:] = elements
    a["abs_sum"][:] = active * rng.uniform(0.1, 2.0, neurons)
    a["max_pre"][:] = np.where(active > 0, rng.uniform(0.01, 5.0, neurons),
                               -rng.uniform(0.01, 3.0, neurons))
    a["min_pre"][:] = -rng.uniform(3.0, 6.0, neurons)
    stats.samples, stats.elements = samples, elements
    return stats


def synthetic_result(widths: list[int], dead_rates: list[float], seed: int = 0,
                     names: list[str] | None = None) -> tuple[ScanResult, list[np.ndarray]]:
    """A scan with one ReLU site per width; returns it and each site's dead indices."""
    rng = np.random.default_rng(seed)
    results, planted = [], []
    for i, (n, rate) in enumerate(zip(widths, dead_rates, strict=True)):
        dead = np.sort(rng.choice(n, size=round(n * rate), replace=False))
        name = names[i] if names else f"blocks.{i}.act"
        info = SiteInfo(name, "relu", 1, n, (1, n, 4, 4), "module", name, {})
        results.append(SiteResult(info, site_stats(n, dead, rng)))
        planted.append(dead)
    result = ScanResult.build(ModelInfo("synthetic.onnx", "onnx", "0" * 64),
                              DataInfo("synthetic batches", 100, False), Settings(), results)
    return result, planted


def embedded_data(page: str) -> dict[str, Any]:
    """The JSON the page carries, parsed back."""
    import json

    m = re.search(r'<script type="application/json" id="deadrelu-data">(.*?)</script>', page,
                  re.S)
    assert m is not None, "no data block"
    data: dict[str, Any] = json.loads(m.group(1))
    return data
