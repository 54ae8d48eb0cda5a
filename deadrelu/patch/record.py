"""What a patch did: the plan, the changed sites before → after, the drift; JSON and a table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deadrelu import __version__
from deadrelu.patch.plan import Plan
from deadrelu.patch.verify import Drift

RECORD_SCHEMA = 1


@dataclass
class SiteChange:
    name: str
    name_after: str | None  # functional sites are named after their kind: root/relu → root/elu
    kind_before: str
    kind_after: str | None
    rewrite: str
    neurons: int
    dead_before: int
    dead_after: int | None
    negative_only_after: int | None
    changed_channels: int
    compensation: str | None = None  # "fc1" (the layer whose bias absorbed the shift) or why not

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PatchResult:
    model: dict[str, Any]
    output: str | None
    output_format: str | None
    plan: Plan
    status: str  # "patched" | "dry-run" | "nothing"
    data: dict[str, Any] = field(default_factory=dict)
    changes: list[SiteChange] = field(default_factory=list)
    drift: Drift | None = None
    drift_uncompensated: Drift | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dead_after(self) -> int:
        return sum(c.dead_after or 0 for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_schema": RECORD_SCHEMA,
            "deadrelu_version": __version__,
            "status": self.status,
            "model": self.model,
            "data": self.data,
            "output": {"path": self.output, "format": self.output_format},
            "plan": self.plan.to_dict(),
            "changed_sites": [c.to_dict() for c in self.changes],
            "drift": self.drift.to_dict() if self.drift else None,
            "drift_without_compensation": (self.drift_uncompensated.to_dict()
                                           if self.drift_uncompensated else None),
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def render_table(r: PatchResult, console: Any) -> None:
    from rich import box
    from rich.table import Table

    console.print("[bold]deadrelu patch[/bold]" + (" (dry run)" if r.status == "dry-run" else ""))
    if r.status == "nothing":
        console.print()
        console.print("nothing to patch: no " + "/".join(r.plan.kinds) + " site with a dead "
                      "neuron matches the selection")
        return
    if r.status == "dry-run" or not r.changes:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("site", "kind", "neurons", "dead", "dead%", "plan"):
            t.add_column(col, justify="right" if col in ("neurons", "dead", "dead%") else "left")
        for s in r.plan.sites:
            action = s.rewrite.describe() if s.rewrite and not s.skipped else f"skip: {s.skipped}"
            t.add_row(s.name, s.kind, str(s.neurons), str(len(s.dead)), _pct(s.dead_rate),
                      action)
        console.print(t)
    else:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("site", "kind", "rewrite", "neurons", "dead", "neg-only"):
            t.add_column(col, justify="left" if col in ("site", "kind", "rewrite") else "right",
                         no_wrap=col != "site")
        for c in r.changes:
            after = "?" if c.dead_after is None else str(c.dead_after)
            name = c.name if c.name_after in (None, c.name) else f"{c.name} → {c.name_after}"
            t.add_row(name, c.kind_before, c.rewrite, str(c.neurons),
                      f"{c.dead_before} → {after}",
                      "?" if c.negative_only_after is None else str(c.negative_only_after))
        console.print(t)
        skipped = [s for s in r.plan.sites if s.skipped]
        for s in skipped:
            console.print(f"skipped {s.name}: {s.skipped}")
    if r.output:
        console.print(f"wrote: {r.output} ({r.output_format})" if r.status == "patched"
                      else f"would write: {r.output} ({r.output_format})")
    if r.data:
        console.print(f"data: {r.data.get('source')}")
    if r.drift is not None:
        _drift_line(console, "output drift", r.drift)
        if r.drift_uncompensated is not None:
            _drift_line(console, "without --compensate", r.drift_uncompensated)
    comp = [c for c in r.changes if c.compensation]
    for c in comp:
        console.print(f"compensate {c.name}: {c.compensation}")


def _drift_line(console: Any, label: str, d: Drift) -> None:
    parts = [f"max |Δ| {d.max_abs:.4g}", f"mean |Δ| {d.mean_abs:.4g}",
             f"relative L2 {d.rel_l2:.4g}"]
    if d.argmax_agreement is not None:
        parts.append(f"argmax agreement {_pct(d.argmax_agreement)}")
    if d.accuracy_before is not None:
        parts.append(f"accuracy {_pct(d.accuracy_before)} → {_pct(d.accuracy_after)}")
    console.print(f"{label}: " + ", ".join(parts), soft_wrap=True)
