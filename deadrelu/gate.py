"""The CI gate behind `deadrelu check`: limits on a ScanResult -> a list of failures.

Every limit is optional; a limit that is set is checked. Figures (design.md §1):

- model dead rate / dormant rate: dead (dormant) neurons / neurons over the gated sites;
- model saturation: inactive finite elements / finite elements over the gated sites, i.e. the
  mean of the site saturations weighted by their element counts (one number for "how much of
  the network's output passes no gradient");
- site figures: the same per site. Saturated sigmoid/tanh neurons count as dead;
- baseline: ``new-dead`` is the number of neurons dead now that were alive in the baseline
  (sites matched by name), ``dead-rate-increase`` the rise of the model dead rate in rate points.

Ignored sites (``--ignore GLOB``) are left out of every figure, model-level ones included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from typing import Any

from deadrelu.diff import diff_results
from deadrelu.errors import DeadReluError
from deadrelu.report.model import ScanResult, Site

RATE_KEYS = frozenset({"max_dead_rate", "max_dormant_rate", "max_saturation",
                       "max_dead_rate_increase"})
COUNT_METRICS = frozenset({"max-dead", "max-site-dead", "max-new-dead"})


@dataclass(frozen=True)
class SiteLimits:
    """Limits that apply to one site (flags --max-site-*, or a [[tool.deadrelu.site]] table)."""

    max_dead_rate: float | None = None
    max_dead: int | None = None
    max_dormant_rate: float | None = None
    max_saturation: float | None = None

    def updated(self, other: SiteLimits) -> SiteLimits:
        """These limits with every limit that ``other`` sets taken from ``other``."""
        return replace(self, **{f.name: getattr(other, f.name) for f in fields(other)
                                if getattr(other, f.name) is not None})

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class SiteOverride:
    """Per-site limits for the sites whose name matches ``match`` (an fnmatch glob)."""

    match: str
    limits: SiteLimits
    ignore: bool = False


@dataclass(frozen=True)
class Limits:
    # model level
    max_dead_rate: float | None = None
    max_dead: int | None = None
    max_dormant_rate: float | None = None
    max_saturation: float | None = None
    # every site, unless an override says otherwise
    site: SiteLimits = field(default_factory=SiteLimits)
    overrides: tuple[SiteOverride, ...] = ()
    ignore: tuple[str, ...] = ()
    # against a baseline scan
    max_new_dead: int | None = None
    max_dead_rate_increase: float | None = None

    def validate(self) -> None:
        """Rates in [0, 1], counts >= 0: one DeadReluError naming the flag otherwise."""
        checks: list[tuple[str, Any]] = [
            (f.name, getattr(self, f.name)) for f in fields(self)
            if f.name not in ("site", "overrides", "ignore")]
        checks += [(f"site_{f.name}", getattr(self.site, f.name)) for f in fields(self.site)]
        for o in self.overrides:
            checks += [(f"{f.name} (site {o.match!r})", getattr(o.limits, f.name))
                       for f in fields(o.limits)]
        for name, value in checks:
            if value is None:
                continue
            flag = "--" + name.replace("_", "-").replace("site-max", "max-site")
            if name.split(" ")[0].removeprefix("site_") in RATE_KEYS:
                if not 0.0 <= value <= 1.0:
                    raise DeadReluError(f"{flag} {value} is out of range: a rate is in [0, 1]")
            elif value < 0:
                raise DeadReluError(f"{flag} {value} is out of range: a count is >= 0")

    def is_empty(self) -> bool:
        model = (self.max_dead_rate, self.max_dead, self.max_dormant_rate, self.max_saturation,
                 self.max_new_dead, self.max_dead_rate_increase)
        return (all(v is None for v in model) and self.site.is_empty()
                and all(o.limits.is_empty() for o in self.overrides))

    def for_site(self, name: str) -> tuple[SiteLimits, str | None]:
        """The limits of one site and, when ignored, the glob that ignores it."""
        for glob in self.ignore:
            if fnmatchcase(name, glob):
                return self.site, glob
        limits = self.site
        for o in self.overrides:  # in order: a later matching table wins for the keys it sets
            if fnmatchcase(name, o.match):
                if o.ignore:
                    return self.site, o.match
                limits = limits.updated(o.limits)
        return limits, None


@dataclass(frozen=True)
class Failure:
    site: str | None  # None: a model-level limit
    metric: str  # the flag name without dashes: "max-dead-rate", "max-site-dead", ...
    figure: float
    limit: float
    detail: str = ""  # e.g. the neurons that died since the baseline

    @property
    def is_rate(self) -> bool:
        return self.metric not in COUNT_METRICS

    def message(self) -> str:
        fig, lim = (_pct(self.figure), _pct(self.limit)) if self.is_rate else (
            str(int(self.figure)), str(int(self.limit)))
        where = f"site {self.site}" if self.site is not None else "model"
        what = _LABELS.get(self.metric, self.metric)
        text = f"{where}: {what} {fig} exceeds --{self.metric} {lim}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        def number(v: float) -> float | int:  # a count is a whole number in the JSON too
            return v if self.is_rate else int(v)

        return {"site": self.site, "metric": self.metric, "figure": number(self.figure),
                "limit": number(self.limit), "detail": self.detail, "message": self.message()}


_LABELS = {
    "max-dead-rate": "dead rate", "max-site-dead-rate": "dead rate",
    "max-dead": "dead neurons", "max-site-dead": "dead neurons",
    "max-dormant-rate": "dormant rate", "max-site-dormant-rate": "dormant rate",
    "max-saturation": "saturation", "max-site-saturation": "saturation",
    "max-new-dead": "newly dead neurons", "max-dead-rate-increase": "dead-rate increase",
}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@dataclass
class Case:
    """One checked item: a site, or one model-level limit. A JUnit testcase."""

    name: str
    site: str | None
    checked: list[str]  # the limits checked, as flag names
    failures: list[Failure]
    skipped: str | None = None  # why the item was not checked (an --ignore glob)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class BaselineComparison:
    path: str
    died: dict[str, list[int]]  # site -> neurons dead now, alive in the baseline
    revived: dict[str, list[int]]
    dead_rate_before: float
    dead_rate_after: float
    # (after - before) / neurons, divided once: the difference of the two rounded rates can
    # miss a limit equal to it (42/112 - 41/112 is not 1/112 in floating point).
    dead_rate_increase: float = 0.0

    @property
    def new_dead(self) -> int:
        return sum(len(v) for v in self.died.values())

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "new_dead": self.new_dead, "died": self.died,
                "revived": self.revived, "dead_rate_before": self.dead_rate_before,
                "dead_rate_after": self.dead_rate_after}


@dataclass
class GateResult:
    result: ScanResult
    limits: Limits
    cases: list[Case]
    baseline: BaselineComparison | None = None
    unmatched_globs: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Failure]:
        return [f for c in self.cases for f in c.failures]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failures": [f.to_dict() for f in self.failures],
            "cases": [{"name": c.name, "site": c.site, "checked": c.checked,
                       "passed": c.passed, "skipped": c.skipped} for c in self.cases],
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "scan": self.result.to_dict(),
        }


def evaluate(result: ScanResult, limits: Limits, baseline: ScanResult | None = None,
             baseline_path: str = "baseline") -> GateResult:
    """Check every limit that is set; the result lists each item checked and each failure."""
    limits.validate()
    cases: list[Case] = []
    gated: list[Site] = []
    for site in result.sites:
        site_limits, ignored_by = limits.for_site(site.name)
        if ignored_by is not None:
            cases.append(Case(site.name, site.name, [], [], skipped=f"ignored by {ignored_by!r}"))
            continue
        gated.append(site)
        cases.append(_site_case(site, site_limits))

    dead = sum(s.dead_count for s in gated)
    neurons = sum(s.info.neurons for s in gated)
    dormant = sum(int(s.figures.dormant.sum()) for s in gated)
    finite = sum(int(s.stats.arrays["finite"].sum()) for s in gated)
    active = sum(int(s.stats.arrays["active"].sum()) for s in gated)
    model_figures: dict[str, float | None] = {
        "max-dead-rate": dead / neurons if neurons else 0.0,
        "max-dead": float(dead),
        "max-dormant-rate": dormant / neurons if neurons else 0.0,
        "max-saturation": (finite - active) / finite if finite else None,  # one rounding
    }
    comparison = None
    if baseline is not None:
        comparison = compare_baseline(result, baseline, baseline_path,
                                      {s.name for s in gated})
        model_figures["max-new-dead"] = float(comparison.new_dead)
        model_figures["max-dead-rate-increase"] = comparison.dead_rate_increase
    elif limits.max_new_dead is not None or limits.max_dead_rate_increase is not None:
        raise DeadReluError("--max-new-dead and --max-dead-rate-increase need --baseline FILE")

    for metric, figure in model_figures.items():
        limit = getattr(limits, metric.removeprefix("--").replace("-", "_"))
        if limit is None:
            continue
        failures = []
        if figure is not None and figure > limit:
            detail = ""
            if metric == "max-new-dead" and comparison is not None:
                detail = "; ".join(f"{s}: {v}" for s, v in comparison.died.items() if v)
            failures.append(Failure(None, metric, figure, limit, detail))
        cases.append(Case(f"model {metric}", None, [metric], failures))

    globs = [*limits.ignore, *(o.match for o in limits.overrides)]
    unmatched = [g for g in dict.fromkeys(globs)
                 if not any(fnmatchcase(s.name, g) for s in result.sites)]
    return GateResult(result, limits, cases, comparison, unmatched)


def _site_case(site: Site, limits: SiteLimits) -> Case:
    n = site.info.neurons
    figures: dict[str, float | None] = {
        "max_dead_rate": site.dead_rate,
        "max_dead": float(site.dead_count),
        "max_dormant_rate": int(site.figures.dormant.sum()) / n if n else 0.0,
        "max_saturation": site.figures.saturation,
    }
    checked, failures = [], []
    for key, figure in figures.items():
        limit = getattr(limits, key)
        if limit is None:
            continue
        metric = "max-site-" + key.removeprefix("max_").replace("_", "-")
        checked.append(metric)
        if figure is not None and figure > limit:
            failures.append(Failure(site.name, metric, figure, limit))
    return Case(site.name, site.name, checked, failures)


def same_architecture(a: ScanResult, b: ScanResult) -> tuple[int, list[str], list[str]]:
    """(sites of a matching b by name, kind and neuron count; names only in a; only in b)."""
    shape_b = {s.name: (s.info.kind, s.info.neurons) for s in b.sites}
    names_a = {s.name for s in a.sites}
    matching = sum(1 for s in a.sites if shape_b.get(s.name) == (s.info.kind, s.info.neurons))
    return (matching, [s.name for s in a.sites if s.name not in shape_b],
            [s.name for s in b.sites if s.name not in names_a])


def compare_baseline(result: ScanResult, baseline: ScanResult, path: str,
                     gated: Iterable[str] | None = None) -> BaselineComparison:
    """Neurons that died / revived since ``baseline``, a scan of the same architecture."""
    matching, only_here, only_there = same_architecture(result, baseline)
    if matching != len(result.sites) or only_there:
        total = max(len(result.sites), len(baseline.sites))
        extra = []
        if only_there:
            extra.append(f"only in the baseline: {_names(only_there)}")
        if only_here:
            extra.append(f"only in this scan: {_names(only_here)}")
        raise DeadReluError(
            f"the baseline is a scan of a different architecture: {matching} of {total} sites "
            "match by name, kind and size" + (f" ({'; '.join(extra)})" if extra else ""),
            path=path)
    keep = set(gated) if gated is not None else {s.name for s in result.sites}
    sites = [d for d in diff_results(baseline, result).sites if d.name in keep]
    before = sum(d.dead_before or 0 for d in sites)
    after = sum(d.dead_after or 0 for d in sites)
    neurons = sum(d.neurons_after or 0 for d in sites)
    return BaselineComparison(path, {d.name: d.died for d in sites},
                              {d.name: d.revived for d in sites},
                              before / neurons if neurons else 0.0,
                              after / neurons if neurons else 0.0,
                              (after - before) / neurons if neurons else 0.0)


def _names(names: Sequence[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (" …" if len(names) > n else "")
