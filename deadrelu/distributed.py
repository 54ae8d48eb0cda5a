"""Scans across processes: ``torchrun --nproc-per-node N -m deadrelu scan …``.

Every rank reads the same data stream and runs the model on its share of the batches (batch
``i`` goes to rank ``i % world``), so the per-batch statistics are those of a single-process
scan with the same batch size. The per-neuron accumulators are then combined with
``torch.distributed`` as each one declares in :data:`deadrelu.stats.NEURON_FIELDS` (sum / min /
max), which makes every count and extreme equal to the single-process scan's exactly;
``abs_sum`` is a float64 sum and equal up to the order of the additions. Every rank ends up
with the same result; only rank 0 should print or write it (:func:`is_primary`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from deadrelu.errors import DeadReluError, first_line
from deadrelu.stats import NEURON_FIELDS, NeuronStats

T = TypeVar("T")


def launched() -> bool:
    """True inside a torchrun (or torch.distributed.launch) process group of two or more."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def is_primary() -> bool:
    """Rank 0, or not distributed at all: the process that prints and writes."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:  # pragma: no cover - torch always has the module
        pass
    return int(os.environ.get("RANK", "0") or 0) == 0


def group_rank() -> int | None:
    """This process's rank in a process group of two or more, else None: what a message
    about this process's share of the data names."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist.get_rank()
    except ImportError:  # pragma: no cover - torch always has the module
        pass
    return None


@dataclass
class Group:
    """The process group a scan runs in, and whether this scan created it."""

    rank: int
    world: int
    device: Any  # torch.device the collectives use (cuda:LOCAL_RANK for nccl)
    owned: bool

    def shard(self, batches: Iterable[T]) -> Iterator[T]:
        for i, batch in enumerate(batches):
            if i % self.world == self.rank:
                yield batch

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def join(device: Any) -> Group:
    """Join (or reuse) the default process group: gloo on CPU, nccl on CUDA."""
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise DeadReluError("--distributed: this torch build has no torch.distributed")
    owned = False
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
                   if k not in os.environ]
        if missing:
            raise DeadReluError("--distributed needs the environment torchrun sets ("
                                + ", ".join(missing) + " missing): run it as "
                                "torchrun --nproc-per-node N -m deadrelu scan …")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        owned = True
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    return Group(dist.get_rank(), dist.get_world_size(), comm, owned)


def local_device(device: Any) -> Any:
    """``cuda`` under torchrun means this rank's GPU, cuda:LOCAL_RANK."""
    import torch

    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def reduce_results(group: Group, results: list[Any], seen: int, notes: list[str]
                   ) -> tuple[list[Any], int, list[str]]:
    """Every rank's SiteResults combined into those of the whole data, on every rank."""
    try:
        return _reduce_results(group, results, seen, notes)
    except RuntimeError as exc:
        # A rank that failed (bad data in its share, say) exits with its own one-line error
        # and closes its connections; the others learn it here, from the collective.
        raise DeadReluError(f"rank {group.rank}: another rank stopped before the statistics "
                            f"were combined; its error says why ({first_line(exc, 120)})"
                            ) from None


def _reduce_results(group: Group, results: list[Any], seen: int, notes: list[str]
                    ) -> tuple[list[Any], int, list[str]]:
    import torch
    import torch.distributed as dist

    from deadrelu.backends.sites import SiteResult

    parts: list[Any] = [None] * group.world
    dist.all_gather_object(parts, {"infos": [r.info for r in results], "notes": notes})
    infos: dict[str, Any] = {}
    for part in parts:  # execution order of the lowest rank that saw a site
        for info in part["infos"]:
            first = infos.setdefault(info.name, info)
            if first.neurons != info.neurons:
                raise DeadReluError(f"site {info.name} has {first.neurons} neurons on one rank "
                                    f"and {info.neurons} on another")
    mine = {r.info.name: r.stats for r in results}
    names = list(infos)
    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    merged: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    for field, (rule, dtype, init) in NEURON_FIELDS.items():
        flat = np.concatenate(
            [mine[n].arrays[field] if n in mine else np.full(infos[n].neurons, init, dtype)
             for n in names] or [np.zeros(0, dtype)]).astype(dtype)
        tensor = torch.from_numpy(flat).to(group.device)
        dist.all_reduce(tensor, op=ops[rule])
        values = tensor.cpu().numpy()
        start = 0
        for n in names:
            merged[n][field] = values[start:start + infos[n].neurons].copy()
            start += infos[n].neurons
    scalars = np.array([seen] + [v for n in names for v in (
        (mine[n].samples, mine[n].elements) if n in mine else (0, 0))], dtype=np.int64)
    total = torch.from_numpy(scalars).to(group.device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    counts = total.cpu().numpy().tolist()
    out = [SiteResult(infos[n], NeuronStats(merged[n], counts[1 + 2 * i], counts[2 + 2 * i]))
           for i, n in enumerate(names)]
    all_notes = list(dict.fromkeys(note for part in parts for note in part["notes"]))
    return out, int(counts[0]), all_notes
