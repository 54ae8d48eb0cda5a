"""Merge partial scans of one model (different data shards) into the scan of all the data.

Every accumulator merges by its declared rule (NeuronStats.merge: sum / min / max), and every
figure is derived again from the merged accumulators, so the merge is exactly the scan of the
concatenated data (up to float64 summation order in ``abs_sum``, which only feeds the dormant
score). A job runner (Slurm array, Ray, Spark) can fan a scan out and merge the reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from deadrelu.backends.sites import SiteInfo, SiteResult
from deadrelu.errors import DeadReluError
from deadrelu.report.model import DataInfo, ScanResult

# Settings that change where a computation runs, not what it computes.
_RUNTIME_SETTINGS = frozenset({"device"})


def _site_key(info: SiteInfo) -> tuple[object, ...]:
    # shape[0] is the batch size of the shard's first call; the rest must agree.
    return (info.name, info.kind, info.channel_axis, info.neurons, tuple(info.shape[1:]),
            info.call, info.module, sorted(info.params.items()))


def _compare(first: ScanResult, other: ScanResult, path: str) -> None:
    if (first.model.sha256, first.model.format) != (other.model.sha256, other.model.format):
        raise DeadReluError(
            f"is a scan of a different model ({other.model.format} {_short(other.model.sha256)}"
            f", not {first.model.format} {_short(first.model.sha256)}); merge only combines "
            "scans of one model file on different data", path=path)
    if first.settings != other.settings:
        raise DeadReluError(f"was scanned with other settings ({other.settings.to_dict()}, not "
                            f"{first.settings.to_dict()}); re-scan with the same --eps, --tau, "
                            "--min-active", path=path)
    a = {k: v for k, v in first.extra_settings.items() if k not in _RUNTIME_SETTINGS}
    b = {k: v for k, v in other.extra_settings.items() if k not in _RUNTIME_SETTINGS}
    if a != b:
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise DeadReluError(f"was scanned with other settings: {', '.join(keys)} "
                            f"({', '.join(f'{k}={b.get(k)!r}, not {a.get(k)!r}' for k in keys)})",
                            path=path)
    keys_a = [_site_key(s.info) for s in first.sites]
    keys_b = [_site_key(s.info) for s in other.sites]
    if keys_a != keys_b:
        names_b = {k[0] for k in keys_b}
        same = sum(1 for ka, kb in zip(keys_a, keys_b, strict=False) if ka == kb)
        raise DeadReluError(
            f"has other sites ({same} of {max(len(keys_a), len(keys_b))} match, "
            f"{sum(1 for k in keys_a if k[0] in names_b)} by name); merge only combines scans "
            "of one model", path=path)


def _refuse_overlap(results: Sequence[ScanResult], names: Sequence[str]) -> None:
    """A data file in two reports (a merged report and one of its shards, one shard scanned
    twice, or two prefixes of one file with --samples) would have samples counted twice.
    Files are compared by resolved path, so shards of one name in different folders merge;
    in-memory data and data functions name no file and are not compared."""
    seen: dict[str, str] = {}
    for result, name in zip(results, names, strict=True):
        for path in result.data.files:
            if path in seen:
                raise DeadReluError(
                    f"scanned {path}, as {seen[path]} did: merging them would count its "
                    "samples twice", path=name)
            seen[path] = name


def _short(sha: str | None) -> str:
    return "sha256 " + sha[:12] if sha else "unknown sha256"


def merge_results(results: Sequence[ScanResult], paths: Sequence[str] | None = None
                  ) -> ScanResult:
    """The scan of all the shards' data; refuses scans of other models or settings."""
    if not results:
        raise DeadReluError("merge needs at least one scan report")
    names = list(paths) if paths is not None else [f"report {i + 1}" for i in
                                                    range(len(results))]
    first = results[0]
    for other, path in zip(results[1:], names[1:], strict=True):
        _compare(first, other, path)
    _refuse_overlap(results, names)
    merged = []
    for i, site in enumerate(first.sites):
        stats = site.stats
        for other in results[1:]:
            stats = stats.merge(other.sites[i].stats)
        merged.append(SiteResult(site.info, stats))
    data = DataInfo(" + ".join(r.data.source for r in results),
                    sum(r.data.samples for r in results),
                    any(r.data.synthetic for r in results),
                    tuple(f for r in results for f in r.data.files))
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    return ScanResult.build(first.model, data, first.settings, merged, notes,
                            first.extra_settings)
