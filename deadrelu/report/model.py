"""ScanResult: what a scan found, and its JSON form (a public, versioned contract)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from deadrelu import __version__
from deadrelu.activations import KIND_BY_NAME
from deadrelu.backends.sites import SiteInfo, SiteResult
from deadrelu.errors import DeadReluError
from deadrelu.report.compact import stats_from_dict, stats_to_dict
from deadrelu.stats import NeuronStats, Settings, SiteFigures, derive

SCHEMA_VERSION = 1
# Neurons whose every pre-activation was NaN or ±Inf are neither dead nor alive: a check that
# passes on them has judged nothing.
UNOBSERVED_NOTE = ("some neurons saw only NaN/Inf pre-activations: they are unobserved, "
                   "neither dead nor alive, and no limit judges them (see `unobserved`)")


@dataclass
class ModelInfo:
    path: str
    format: str
    sha256: str | None = None


@dataclass
class DataInfo:
    source: str
    samples: int
    synthetic: bool
    # The data files and folders read, resolved: merge refuses two reports of one file.
    files: tuple[str, ...] = ()


@dataclass
class Site:
    info: SiteInfo
    stats: NeuronStats
    figures: SiteFigures

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dead_word(self) -> str:
        return KIND_BY_NAME[self.info.kind].dead_word

    @property
    def dead_count(self) -> int:
        return int(self.figures.dead.sum())

    @property
    def dead_rate(self) -> float:
        return self.dead_count / self.info.neurons if self.info.neurons else 0.0

    def dead_indices(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.figures.dead)]

    def to_dict(self) -> dict[str, Any]:
        # Per-neuron accumulators are packed for very wide sites.
        return {**self.figures_dict(), "accumulators": stats_to_dict(self.stats)}

    def figures_dict(self) -> dict[str, Any]:
        """What the site is and its figures: the report entry without the accumulators."""
        f = self.figures
        d: dict[str, Any] = {
            "name": self.info.name,
            "kind": self.info.kind,
            "call": self.info.call,
            "module": self.info.module,
            "channel_axis": self.info.channel_axis,
            "shape": list(self.info.shape),
            "params": self.info.params,
            "neurons": self.info.neurons,
            "samples": self.stats.samples,
            "dead": self.dead_count,
            "dead_rate": self.dead_rate,
            "dead_indices": self.dead_indices(),
            "dead_low": int(f.dead_low.sum()),
            "dead_high": int(f.dead_high.sum()),
            "negative_only": int(f.negative_only.sum()),
            "negative_only_indices": [int(i) for i in np.flatnonzero(f.negative_only)],
            "dormant": int(f.dormant.sum()),
            "rarely_active": int(f.rarely_active.sum()),
            "unobserved": int(f.unobserved.sum()),
            "saturation": f.saturation,
            "cap_fraction": f.cap_fraction,
            "margin": f.margin,
            "nan": f.nonfinite,
        }
        if self.dead_word == "saturated":
            d["saturated"] = self.dead_count
        return d


@dataclass
class ScanResult:
    model: ModelInfo
    data: DataInfo
    settings: Settings
    sites: list[Site]
    notes: list[str] = field(default_factory=list)
    extra_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, model: ModelInfo, data: DataInfo, settings: Settings,
              results: list[SiteResult], notes: list[str] | None = None,
              extra_settings: Mapping[str, Any] | None = None) -> ScanResult:
        sites = [Site(r.info, r.stats, derive(r.stats, r.info.kind, r.info.params, settings))
                 for r in results]
        # Derived from the statistics, so said again (or no longer) after a merge.
        kept = [n for n in notes or [] if n != UNOBSERVED_NOTE]
        if any(s.figures.unobserved.any() for s in sites):
            kept.append(UNOBSERVED_NOTE)
        return cls(model, data, settings, sites, kept, dict(extra_settings or {}))

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.sites[:8])
        raise DeadReluError(f"no site named {name!r}; sites are: {names}"
                            + (" …" if len(self.sites) > 8 else ""))

    # ---- summary figures
    @property
    def neurons(self) -> int:
        return sum(s.info.neurons for s in self.sites)

    @property
    def dead(self) -> int:
        return sum(s.dead_count for s in self.sites)

    @property
    def dead_rate(self) -> float:
        return self.dead / self.neurons if self.neurons else 0.0

    @property
    def min_samples(self) -> int:
        return min((s.stats.samples for s in self.sites), default=0)

    def bound_samples(self) -> int:
        """The N of the rule of three: the samples scanned, or fewer when a site with dead
        neurons saw fewer (a branch of forward that most samples skip). A site whose channel
        axis is its axis 0 counts batches, not samples, and is left out."""
        seen = [s.stats.samples for s in self.sites
                if s.dead_count and s.info.channel_axis != 0 and s.stats.samples > 0]
        return min([self.data.samples, *seen])

    def rule_of_three(self) -> float | None:
        """95 % upper bound on how often a neuron seen dead on N samples could still fire."""
        n = self.bound_samples()
        return 3.0 / n if n > 0 else None

    def worst_sites(self, n: int = 3) -> list[Site]:
        ranked = sorted((s for s in self.sites if s.dead_count),
                        key=lambda s: (-s.dead_rate, -s.dead_count))
        return ranked[:n]

    def summary(self) -> dict[str, Any]:
        return {
            "sites": len(self.sites),
            "neurons": self.neurons,
            "dead": self.dead,
            "dead_rate": self.dead_rate,
            "dead_by_kind": self._by_kind(),
            "dormant": sum(int(s.figures.dormant.sum()) for s in self.sites),
            "negative_only": sum(int(s.figures.negative_only.sum()) for s in self.sites),
            "rarely_active": sum(int(s.figures.rarely_active.sum()) for s in self.sites),
            "sites_with_dead": sum(1 for s in self.sites if s.dead_count),
            "worst_sites": [s.name for s in self.worst_sites()],
            "nan": sum(s.figures.nonfinite for s in self.sites),
            "unobserved": sum(int(s.figures.unobserved.sum()) for s in self.sites),
            "fire_rate_bound_95": self.rule_of_three(),
        }

    def _by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sites:
            out[s.info.kind] = out.get(s.info.kind, 0) + s.dead_count
        return out

    def to_dict(self) -> dict[str, Any]:
        settings = {**self.settings.to_dict(), **self.extra_settings}
        return {
            "schema_version": SCHEMA_VERSION,
            "deadrelu_version": __version__,
            "model": {"path": self.model.path, "format": self.model.format,
                      "sha256": self.model.sha256},
            "data": {"source": self.data.source, "samples": self.data.samples,
                     "synthetic": self.data.synthetic,
                     **({"files": list(self.data.files)} if self.data.files else {})},
            "settings": settings,
            "summary": self.summary(),
            "notes": self.notes,
            "sites": [s.to_dict() for s in self.sites],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "report") -> ScanResult:
        """Rebuild a result from its JSON form (for merge, diff, patch --scan)."""
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DeadReluError(
                f"schema_version {version!r} is not one this deadrelu reads "
                f"({SCHEMA_VERSION}); re-scan with this version", path=source)
        try:
            s = d["settings"]
            settings = Settings(eps=s["eps"], tau=s["tau"], min_active=s["min_active"])
            extra = {k: v for k, v in s.items() if k not in ("eps", "tau", "min_active")}
            results = []
            for site in d["sites"]:
                info = SiteInfo(site["name"], site["kind"], site["channel_axis"],
                                site["neurons"], tuple(site["shape"]), site["call"],
                                site["module"], dict(site.get("params") or {}))
                try:
                    stats = stats_from_dict(site["accumulators"])
                except ValueError as exc:  # a packed accumulator that does not unpack
                    raise DeadReluError(f"not a valid deadrelu report: site {info.name!r}: "
                                        f"{exc}", path=source) from None
                for field, values in stats.arrays.items():
                    if len(values) != info.neurons:
                        raise DeadReluError(
                            f"not a valid deadrelu report: site {info.name!r} has "
                            f"{info.neurons} neurons but {len(values)} {field} values",
                            path=source)
                problem = _impossible(stats)
                if problem is not None:
                    raise DeadReluError(f"not a valid deadrelu report: site {info.name!r} "
                                        f"has {problem}", path=source)
                results.append(SiteResult(info, stats))
            m, data = d["model"], d["data"]
            return cls.build(ModelInfo(m["path"], m["format"], m.get("sha256")),
                             DataInfo(data["source"], data["samples"], data["synthetic"],
                                      tuple(data.get("files") or ())),
                             settings, results, list(d.get("notes") or []), extra)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DeadReluError(f"not a valid deadrelu report: {type(exc).__name__} {exc}",
                                path=source) from None


def _impossible(stats: NeuronStats) -> str | None:
    """What no scan can produce in these accumulators (a hand-edited or damaged report), or
    None. JSON parsers take NaN; counts are within the elements and samples seen."""
    a = stats.arrays
    for name, values in a.items():
        if np.isnan(values).any():
            return f"a NaN {name} value"
    # Each count is at most its bound: finite elements of elements seen, and so on.
    within = {"finite": stats.elements, "active": a["finite"], "positive": a["finite"],
              "at_cap": a["finite"], "active_samples": stats.samples}
    for name, bound in within.items():
        if (a[name] < 0).any() or (a[name] > bound).any():
            return f"an impossible {name} count (negative, or more than can have been seen)"
    if (a["abs_sum"] < 0).any():
        return "a negative abs_sum"
    return None


def json_schema() -> dict[str, Any]:
    text = resources.files("deadrelu.report").joinpath("schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema
