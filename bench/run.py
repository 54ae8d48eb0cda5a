"""Benchmark: plain inference vs ``deadrelu.scan`` vs the naive references, in one process.

    python -m bench --quick            # under a minute on a 2-core CPU
    python -m bench                    # full sizes (ResNet-50 at 224x224)
    python -m bench --device cuda --batch-size 256 [--dtype bfloat16] [--compile]

Every approach runs over the same batches; the approaches alternate within each repetition
(plain, scan, naive, plain, scan, …) so that drift of the machine (other processes, thermal
state) hits them alike. Reported per approach: the median wall time over the repetitions and
the peak memory of one run; per comparison: the median over repetitions of the paired ratio
(scan / plain of the same repetition). Results go to a JSON file (``--output``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import models, naive
from bench.memory import peak_memory


@dataclass
class Config:
    name: str
    build: Callable[[], torch.nn.Module]
    shape: tuple[int, ...]  # one sample
    batch_size: int
    batches: int


def configs(quick: bool, batch_size: int | None) -> list[Config]:
    if quick:
        out = [Config("resnet50-shaped 64x64", models.resnet50, (3, 64, 64), 16, 2),
               Config("transformer-mlp 12x256 (seq 64)", models.transformer_mlp, (64, 256), 16,
                      2)]
    else:
        out = [Config("resnet50-shaped 224x224", models.resnet50, (3, 224, 224), 16, 3),
               Config("transformer-mlp 12x256 (seq 128)", models.transformer_mlp, (128, 256),
                      32, 4)]
    if batch_size:
        for c in out:
            c.batch_size = batch_size
    return out


def make_data(cfg: Config) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((cfg.batch_size * cfg.batches, *cfg.shape), dtype=np.float32)


def batch_iter(x: np.ndarray, bs: int, name: str = "x") -> Callable[[], Iterator[dict[str, Any]]]:
    def it() -> Iterator[dict[str, Any]]:
        for i in range(0, len(x), bs):
            yield {name: x[i:i + bs]}
    return it


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_torch(model: torch.nn.Module, batches: Callable[[], Iterator[dict[str, Any]]],
                device: str, dtype: torch.dtype | None) -> None:
    with torch.inference_mode():
        for b in batches():
            x = torch.from_numpy(b["x"]).to(device, non_blocking=True)
            model(x.to(dtype) if dtype is not None else x)
    sync(device)


def export_onnx(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """The TorchScript-based exporter: twice as fast as dynamo=True here, same graph shape."""
    x = torch.zeros((2, *shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}})


def timed(fn: Callable[[], Any], device: str) -> tuple[float, int]:
    with peak_memory(device) as peak:
        start = time.perf_counter()
        fn()
        sync(device)
        elapsed = time.perf_counter() - start
    return elapsed, peak.bytes


def compare(approaches: dict[str, Callable[[], Any]], reps: int, device: str
            ) -> dict[str, dict[str, Any]]:
    """Alternate the approaches ``reps`` times after one warm-up round each."""
    for fn in approaches.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in approaches}
    peaks: dict[str, list[int]] = {k: [] for k in approaches}
    for _ in range(reps):
        for name, fn in approaches.items():
            t, p = timed(fn, device)
            times[name].append(t)
            peaks[name].append(p)
    return {k: {"median_s": statistics.median(times[k]), "min_s": min(times[k]),
                "times_s": times[k], "peak_bytes": max(peaks[k])} for k in approaches}


def ratio(rows: dict[str, dict[str, Any]], a: str, b: str) -> float:
    """Median over repetitions of time(a) / time(b) of the same repetition."""
    return statistics.median(x / y for x, y in zip(rows[a]["times_s"], rows[b]["times_s"],
                                                   strict=True))


def bench_config(cfg: Config, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import deadrelu
    from deadrelu.data import DataSource

    torch.manual_seed(0)
    model = cfg.build().to(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if dtype is not None:
        model = model.to(dtype)
    x = make_data(cfg)
    batches = batch_iter(x, cfg.batch_size)
    source = DataSource(f"{len(x)} random samples", False, len(x), batches)
    kwargs: dict[str, Any] = {"device": args.device}
    if args.dtype:
        kwargs["dtype"] = args.dtype
    if args.compile:
        kwargs["compile"] = True
    run_model: torch.nn.Module = torch.compile(model) if args.compile else model  # type: ignore[assignment]

    out: dict[str, Any] = {"model": cfg.name, "batch_size": cfg.batch_size,
                           "samples": len(x), "sites": None, "neurons": None}
    start = time.perf_counter()
    result = deadrelu.scan(model, source, **kwargs)  # with --compile: export + compile
    out["first_scan_s"] = time.perf_counter() - start
    out["sites"], out["neurons"] = len(result.sites), result.neurons
    approaches = {
        "plain": lambda: plain_torch(run_model, batches, args.device, dtype),
        "scan": lambda: deadrelu.scan(model, source, **kwargs),
        "naive-hooks": lambda: naive.torch_hooks(model, batches(), args.device),
    }
    if args.compile:  # compiled inference is "plain"; eager inference is compared too
        approaches["plain-eager"] = lambda: plain_torch(model, batches, args.device, dtype)
    torch_rows = compare(approaches, args.reps, args.device)
    out["torch"] = {"rows": torch_rows,
                    "scan/plain": ratio(torch_rows, "scan", "plain"),
                    "naive/plain": ratio(torch_rows, "naive-hooks", "plain"),
                    "memory scan/plain": _mem_ratio(torch_rows, "scan", "plain")}
    if args.compile:
        out["torch"]["scan/plain-eager"] = ratio(torch_rows, "scan", "plain-eager")
    if args.onnx and args.device == "cpu" and not args.dtype:
        path = workdir / f"{cfg.name.split()[0]}.onnx"
        start = time.perf_counter()
        export_onnx(cfg.build().eval(), cfg.shape, path)
        out["onnx_export_s"] = time.perf_counter() - start
        onnx_rows = compare({
            "plain": lambda: naive.onnx_plain(str(path), batches()),
            "scan": lambda: deadrelu.scan(str(path), source),
            "naive-every-output": lambda: naive.onnx_every_output(str(path), batches()),
        }, args.reps, "cpu")
        out["onnx"] = {"rows": onnx_rows,
                       "scan/plain": ratio(onnx_rows, "scan", "plain"),
                       "naive/plain": ratio(onnx_rows, "naive-every-output", "plain"),
                       "naive/scan": ratio(onnx_rows, "naive-every-output", "scan"),
                       "memory scan/plain": _mem_ratio(onnx_rows, "scan", "plain")}
    return out


def _mem_ratio(rows: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    # On CPU a run that reuses memory freed by an earlier one shows a peak near 0: no ratio.
    return rows[a]["peak_bytes"] / rows[b]["peak_bytes"] if rows[b]["peak_bytes"] >= 2**20 \
        else None


def show(res: dict[str, Any]) -> None:
    print(f"\n{res['model']}: batch {res['batch_size']}, {res['samples']} samples, "
          f"{res['sites']} sites, {res['neurons']:,} neurons")
    for backend in ("torch", "onnx"):
        if backend not in res:
            continue
        r = res[backend]
        for name, row in r["rows"].items():
            print(f"  {backend:5} {name:20} {row['median_s'] * 1000:9.1f} ms (min "
                  f"{row['min_s'] * 1000:8.1f})  peak {row['peak_bytes'] / 2**20:8.1f} MiB")
        line = (f"  {backend:5} scan/plain {r['scan/plain']:.3f}x   "
                f"naive/plain {r['naive/plain']:.3f}x")
        if "scan/plain-eager" in r:
            line += f"   scan/plain-eager {r['scan/plain-eager']:.3f}x"
        if r.get("memory scan/plain") is not None:
            line += f"   memory scan/plain {r['memory scan/plain']:.2f}x"
        if "naive/scan" in r:
            line += f"   naive/scan {r['naive/scan']:.2f}x"
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: under a minute on CPU")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float16", "bfloat16"], default=None)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile plain inference and scan with compile=True")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--reps", type=int, default=None, help="repetitions (quick 5, full 7)")
    p.add_argument("--no-onnx", dest="onnx", action="store_false")
    p.add_argument("--only", default=None, help="run only models whose name contains this")
    p.add_argument("--output", "-o", type=Path, default=None,
                   help="JSON results (default bench/results-{quick,full}.json)")
    args = p.parse_args(argv)
    args.reps = args.reps or (5 if args.quick else 7)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full"
    output = args.output or Path(__file__).parent / f"results-{mode}.json"
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in configs(args.quick, args.batch_size):
            if args.only and args.only not in cfg.name:
                continue
            res = bench_config(cfg, args, Path(tmp))
            show(res)
            results.append(res)
    doc = {"device": _device_name(args.device), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "python": platform.python_version(),
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "wall_s": time.perf_counter() - started, "results": results}
    output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{doc['wall_s']:.0f} s; results in {output}")
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    sys.exit(main())
