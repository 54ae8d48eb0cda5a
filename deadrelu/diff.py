"""Compare two scans: per-site dead counts before / after, the neurons that died and revived.

Sites are matched by name. Sites present in one scan only are listed as added / removed; a site
whose neuron count changed is compared by counts only (its neuron indices mean other things).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deadrelu.report.model import ScanResult, Site


@dataclass
class SiteDiff:
    name: str
    status: str  # "same-shape" | "resized" | "added" | "removed"
    kind: str
    neurons_before: int | None
    neurons_after: int | None
    dead_before: int | None
    dead_after: int | None
    died: list[int]
    revived: list[int]
    saturation_before: float | None
    saturation_after: float | None

    @property
    def dead_rate_before(self) -> float | None:
        return _rate(self.dead_before, self.neurons_before)

    @property
    def dead_rate_after(self) -> float | None:
        return _rate(self.dead_after, self.neurons_after)

    @property
    def changed(self) -> bool:
        return (self.status != "same-shape" or bool(self.died) or bool(self.revived)
                or self.dead_before != self.dead_after)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "kind": self.kind,
                "neurons_before": self.neurons_before, "neurons_after": self.neurons_after,
                "dead_before": self.dead_before, "dead_after": self.dead_after,
                "dead_rate_before": self.dead_rate_before,
                "dead_rate_after": self.dead_rate_after,
                "died": self.died, "revived": self.revived,
                "saturation_before": self.saturation_before,
                "saturation_after": self.saturation_after}


def _rate(dead: int | None, neurons: int | None) -> float | None:
    if dead is None or not neurons:
        return None
    return dead / neurons


@dataclass
class ScanDiff:
    before: ScanResult
    after: ScanResult
    before_path: str
    after_path: str
    sites: list[SiteDiff]

    @property
    def died(self) -> int:
        return sum(len(s.died) for s in self.sites)

    @property
    def revived(self) -> int:
        return sum(len(s.revived) for s in self.sites)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": {"path": self.before_path, "model": self.before.model.path,
                       "sha256": self.before.model.sha256, "samples": self.before.data.samples,
                       "dead": self.before.dead, "neurons": self.before.neurons,
                       "dead_rate": self.before.dead_rate},
            "after": {"path": self.after_path, "model": self.after.model.path,
                      "sha256": self.after.model.sha256, "samples": self.after.data.samples,
                      "dead": self.after.dead, "neurons": self.after.neurons,
                      "dead_rate": self.after.dead_rate},
            "died": self.died,
            "revived": self.revived,
            "sites": [s.to_dict() for s in self.sites],
        }


def _indices(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)]


def _one_side(site: Site, status: str) -> SiteDiff:
    before = status == "removed"
    n, d, sat = site.info.neurons, site.dead_count, site.figures.saturation
    return SiteDiff(site.name, status, site.info.kind,
                    n if before else None, None if before else n,
                    d if before else None, None if before else d, [], [],
                    sat if before else None, None if before else sat)


def diff_results(before: ScanResult, after: ScanResult, before_path: str = "before",
                 after_path: str = "after") -> ScanDiff:
    """Per-site comparison, in the execution order of ``after``; removed sites come last."""
    old = {s.name: s for s in before.sites}
    new_names = {s.name for s in after.sites}
    out: list[SiteDiff] = []
    removed = [s for s in before.sites if s.name not in new_names]
    for site in after.sites:
        prev = old.get(site.name)
        if prev is None:
            out.append(_one_side(site, "added"))
            continue
        same = prev.info.neurons == site.info.neurons
        died = _indices(site.figures.dead & ~prev.figures.dead) if same else []
        revived = _indices(prev.figures.dead & ~site.figures.dead) if same else []
        out.append(SiteDiff(site.name, "same-shape" if same else "resized", site.info.kind,
                            prev.info.neurons, site.info.neurons, prev.dead_count,
                            site.dead_count, died, revived, prev.figures.saturation,
                            site.figures.saturation))
    out += [_one_side(s, "removed") for s in removed]
    return ScanDiff(before, after, before_path, after_path, out)
