"""Which sites change, and into what: a plan made from a scan, before any model is touched.

The rewrite of one site is the function

    h = base(z)                              base: LeakyReLU(alpha) | ELU(alpha) | PReLU(slopes)
    out = h                                  (ReLU)
    out = min(h, cap + s_up * (h - cap))     (ReLU6: cap 6; s_up = the slope above the cap)

With a per-channel PReLU whose slope is exactly 0 on live channels the live channels compute
the original ReLU / ReLU6 bit for bit; with ``alpha = 0`` every rewrite *is* the original.
For ReLU6 the same slope continues above the cap, so neurons stuck at the cap (dead-high)
come back too; ELU has no slope to continue and keeps the plain cap.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deadrelu.errors import DeadReluError

TARGETS = ("leaky", "elu", "prelu")
SCOPES = ("layers", "neurons")
PATCHABLE_KINDS = ("relu", "relu6")
DEFAULT_ALPHA = {"leaky": 0.01, "prelu": 0.01, "elu": 1.0}
CAPS = {"relu": None, "relu6": 6.0}


@dataclass
class Rewrite:
    """The new activation of one site (see the module docstring)."""

    op: str  # "leaky_relu" | "elu" | "prelu"
    alpha: float
    slopes: list[float] | None = None  # prelu: one per channel
    cap: float | None = None  # ReLU6: 6.0
    cap_slopes: list[float] | None = None  # per channel slope above the cap (None: plain cap)
    channels: list[int] | None = None  # prelu: the channels given the slope (None: all)

    def describe(self) -> str:
        if self.op == "prelu":
            assert self.slopes is not None
            n = len(self.channels) if self.channels is not None else len(self.slopes)
            text = (f"PReLU (slope {self.alpha:g} on {n} of {len(self.slopes)} channels, "
                    "0 elsewhere)" if n < len(self.slopes)
                    else f"PReLU (slope {self.alpha:g} on every channel)")
        elif self.op == "leaky_relu":
            text = f"LeakyReLU({self.alpha:g})"
        else:
            text = f"ELU({self.alpha:g})"
        if self.cap is not None:
            text += f", capped at {self.cap:g}" + (
                " with the same slope above" if self.cap_slopes is not None else "")
        return text

    def short(self) -> str:
        name = {"leaky_relu": "LeakyReLU", "elu": "ELU", "prelu": "PReLU"}[self.op]
        text = f"{name}({self.alpha:g})"
        if self.channels is not None:
            text += f" on {len(self.channels)}"
        return text + (f", cap {self.cap:g}" if self.cap is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "alpha": self.alpha, "slopes": self.slopes, "cap": self.cap,
                "cap_slopes": self.cap_slopes, "channels": self.channels,
                "describe": self.describe()}


@dataclass
class PlannedSite:
    name: str
    kind: str
    neurons: int
    channel_axis: int
    rank: int
    call: str
    module: str
    dead: list[int]
    dead_rate: float
    dead_high: list[int] = field(default_factory=list)
    rewrite: Rewrite | None = None
    skipped: str | None = None  # why this site is left as it is
    notes: list[str] = field(default_factory=list)

    @property
    def changed_channels(self) -> list[int]:
        """Channels whose function changes (all of them for a layer-wide rewrite)."""
        if self.rewrite is None:
            return []
        if self.rewrite.channels is not None:
            return list(self.rewrite.channels)
        return list(range(self.neurons))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "neurons": self.neurons,
                "channel_axis": self.channel_axis, "call": self.call, "module": self.module,
                "dead": len(self.dead), "dead_indices": self.dead, "dead_rate": self.dead_rate,
                "rewrite": self.rewrite.to_dict() if self.rewrite else None,
                "skipped": self.skipped, "notes": self.notes}


@dataclass
class Plan:
    target: str
    scope: str
    alpha: float
    sites: list[PlannedSite]  # candidate sites, in execution order
    kinds: list[str] = field(default_factory=lambda: list(PATCHABLE_KINDS))

    @property
    def active(self) -> list[PlannedSite]:
        return [s for s in self.sites if s.rewrite is not None and s.skipped is None]

    def skip(self, name: str, reason: str) -> None:
        for s in self.sites:
            if s.name == name:
                s.skipped = reason

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "scope": self.scope, "alpha": self.alpha,
                "kinds": self.kinds, "sites": [s.to_dict() for s in self.sites]}


def default_scope(target: str) -> str:
    return "neurons" if target == "prelu" else "layers"


def make_plan(scan: Any, *, target: str = "leaky", alpha: float | None = None,
              scope: str | None = None, sites: Sequence[str] = (),
              min_dead_rate: float = 0.0, kinds: Sequence[str] = PATCHABLE_KINDS) -> Plan:
    """The plan for a :class:`~deadrelu.report.model.ScanResult`. Raises on bad requests."""
    if target not in TARGETS:
        raise DeadReluError(f"--to {target!r}: choose one of {', '.join(TARGETS)}")
    scope = scope or default_scope(target)
    if scope not in SCOPES:
        raise DeadReluError(f"--scope {scope!r}: choose layers or neurons")
    if target == "elu" and scope == "neurons":
        raise DeadReluError("--to elu --scope neurons: ELU has no per-channel form; use "
                            "--scope layers, or --to prelu for a per-channel rewrite")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)):
        raise DeadReluError(f"--alpha must be a number, got {alpha!r}")
    alpha = DEFAULT_ALPHA[target] if alpha is None else float(alpha)
    if not (alpha >= 0) or alpha == float("inf"):
        raise DeadReluError(f"--alpha must be a finite number >= 0, got {alpha}")
    if target != "elu" and alpha >= 1:
        raise DeadReluError(f"--alpha {alpha:g}: a negative-side slope must be below 1")
    if not 0 <= min_dead_rate <= 1:
        raise DeadReluError(f"--min-dead-rate must be in [0, 1], got {min_dead_rate}")
    bad = [k for k in kinds if k not in PATCHABLE_KINDS]
    if bad:
        raise DeadReluError(f"--kinds {','.join(bad)}: patch rewrites ReLU and ReLU6 sites "
                            f"only (relu, relu6); a {bad[0]} site has no dead-ReLU rewrite")
    for pattern in sites:
        hits = [s for s in scan.sites if fnmatch.fnmatchcase(s.name, pattern)]
        if not hits:
            names = ", ".join(s.name for s in scan.sites[:8]) or "none"
            raise DeadReluError(f"--sites {pattern!r} matches no site of the model (sites: "
                                f"{names}{' …' if len(scan.sites) > 8 else ''})")
        other = sorted({s.info.kind for s in hits} - set(PATCHABLE_KINDS))
        if len(other) == len({s.info.kind for s in hits}):
            raise DeadReluError(f"--sites {pattern!r} matches only {', '.join(other)} sites; "
                                f"--to {target} rewrites ReLU and ReLU6 sites only")
    planned = []
    for site in scan.sites:
        if site.info.kind not in kinds or site.dead_count == 0:
            continue
        if sites and not any(fnmatch.fnmatchcase(site.name, p) for p in sites):
            continue
        if site.dead_rate < min_dead_rate:
            continue
        p = PlannedSite(site.name, site.info.kind, site.info.neurons, site.info.channel_axis,
                        len(site.info.shape), site.info.call, site.info.module,
                        site.dead_indices(), site.dead_rate,
                        [int(i) for i, v in enumerate(site.figures.dead_high) if v])
        p.rewrite = _rewrite(p, target, scope, alpha)
        if p.kind == "relu6" and p.dead_high and target == "elu":
            p.notes.append(f"{len(p.dead_high)} neuron(s) stuck at the cap (dead-high) stay "
                           "dead: ELU keeps ReLU6's flat top")
        planned.append(p)
    return Plan(target, scope, alpha, planned, list(kinds))


def _rewrite(p: PlannedSite, target: str, scope: str, alpha: float) -> Rewrite:
    cap = CAPS[p.kind]
    if target == "elu":
        return Rewrite("elu", alpha, cap=cap)
    if scope == "layers" and target == "leaky":
        return Rewrite("leaky_relu", alpha, cap=cap,
                       cap_slopes=[alpha] * p.neurons if cap is not None else None)
    chosen = list(range(p.neurons)) if scope == "layers" else sorted(p.dead)
    picked = set(chosen)
    slopes = [alpha if i in picked else 0.0 for i in range(p.neurons)]
    return Rewrite("prelu", alpha, slopes=slopes, cap=cap,
                   cap_slopes=list(slopes) if cap is not None else None,
                   channels=chosen if scope == "neurons" else None)
