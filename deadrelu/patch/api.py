"""patch(): plan from a scan → rewrite a copy → (compensate) → write atomically → verify."""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deadrelu.errors import DeadReluError, a_type
from deadrelu.patch.plan import PATCHABLE_KINDS, Plan, make_plan
from deadrelu.patch.record import PatchResult, SiteChange
from deadrelu.patch.verify import (
    Drift,
    measure_drift,
    module_dtype,
    onnx_runner,
    read_labels,
    torch_runner,
)
from deadrelu.stats import Settings

OUTPUT_FORMATS = {".pt2": "torch-export", ".pt": "torch-pickle", ".pth": "torch-pickle",
                  ".onnx": "onnx"}


def patch(
    model: str | os.PathLike[str],
    data: str | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
    to: str = "leaky",
    alpha: float | None = None,
    scope: str | None = None,
    scan: str | os.PathLike[str] | None = None,
    sites: Sequence[str] = (),
    min_dead_rate: float = 0.0,
    kinds: Sequence[str] = PATCHABLE_KINDS,
    dry_run: bool = False,
    in_place: bool = False,
    compensate: bool = False,
    labels: str | None = None,
    arch: str | None = None,
    arch_kwargs: str | None = None,
    trust_pickle: bool = False,
    on_note: Callable[[str], None] | None = None,
    **scan_options: Any,
) -> PatchResult:
    """Rewrite the dead ReLU / ReLU6 sites of the model file ``model`` into ``output``.

    ``to``: leaky | elu | prelu; ``scope``: layers | neurons (default: neurons for prelu).
    The plan comes from a fresh scan on ``data`` or from the JSON report ``scan``. The output
    format follows ``output``'s suffix: ``.pt2`` (torch.export program, graph rewrite), ``.pt``
    (pickled whole module, built-in modules swapped), ``.onnx``. ``scan_options`` are
    :func:`deadrelu.scan`'s (batch_size, samples, settings, input_shape, …).
    """
    from deadrelu.formats import detect

    if isinstance(sites, str):  # one glob, not its characters
        sites = (sites,)
    if not isinstance(model, str | os.PathLike):
        raise DeadReluError(f"patch takes a model file, not {a_type(model)}: save the module "
                            "(torch.save, or torch.export.save for a .pt2) and patch the file")
    src = Path(model)
    fmt = detect(src)
    out = Path(output) if output is not None else None
    out_format = _check_output(src, out, fmt, dry_run, in_place)
    if out_format is None:  # a dry run without -o plans for the format that patches most
        out_format = "onnx" if fmt == "onnx" else "torch-export"
    if out_format == "torch-pickle" and arch is not None:
        arch = _importable_arch(arch)
    from deadrelu.data import open_data
    from deadrelu.scanner import load_backend
    from deadrelu.scanner import scan as run_scan

    backend, info, _ = load_backend(str(src), arch=arch, arch_kwargs=arch_kwargs,
                                    trust_pickle=trust_pickle)
    notes: list[str] = []
    report = None
    if scan is not None:
        from deadrelu.report.load import load_report

        report = load_report(Path(scan))
        _check_report(report, info, scan)
        if data is None and not report.data.synthetic:
            data = _report_data(report.data.source, Path(scan))
            if data is not None:
                notes.append(f"verifying on the scan report's data, {data}")
                if scan_options.get("samples") is None and " of " in report.data.source:
                    scan_options["samples"] = report.data.samples  # the scan used a prefix
    source = _open(open_data, data, backend, scan_options)
    opts = {k: v for k, v in scan_options.items() if k not in _DATA_KEYS}
    load_opts: dict[str, Any] = {"arch": arch, "arch_kwargs": arch_kwargs,
                                 "trust_pickle": trust_pickle}
    if report is not None:
        _check_report_sites(report, backend, source, str(src), load_opts, opts)
        before = report
    else:
        before = run_scan(str(src), source, **load_opts, **opts)
    # Dead before → after on the same data: the report's own figures only when it is the data
    # we verify on (a given --data, or the file the report names); else a fresh scan.
    same_data = report is None or (data is not None and not source.synthetic)
    baseline = before
    plan = make_plan(before, target=to, alpha=alpha, scope=scope, sites=sites,
                     min_dead_rate=min_dead_rate, kinds=kinds)
    model_info = {"path": str(src), "format": info.format, "sha256": info.sha256}
    data_info = {"source": source.description, "samples": before.data.samples,
                 "synthetic": source.synthetic}
    if source.synthetic:
        notes.append("no --data: planned and verified on synthetic inputs; pass --data")
    result = PatchResult(model_info, str(out) if out else None, out_format, plan, "dry-run",
                         data_info, notes=notes)
    if not plan.active:
        result.status = "nothing"
        return result
    job = _Job(backend, info.format, src, out_format, plan, before, source)
    job.prepare()
    if not plan.active:
        reasons = "; ".join(f"{s.name}: {s.skipped}" for s in plan.sites[:2])
        raise DeadReluError(f"no planned site can be patched in this format ({reasons})")
    if dry_run:
        return result
    assert out is not None
    job.rewrite()
    label_array = read_labels(data, labels)
    if compensate:
        result.drift_uncompensated = job.drift(job.patched_runner(), label_array)
        for name, text in job.compensate().items():
            job.compensation[name] = text
    # Verified under a temporary name, then moved onto -o: an interrupted or failed check
    # leaves no unverified model under the name the user asked for.
    pending = job.write_pending(out)
    try:
        eps = opts["settings"].eps if opts.get("settings") is not None else Settings().eps
        flat = _flat_tops(plan, before, eps)
        after = run_scan(str(pending), source, trust_pickle=True,
                         count_at_cap={k: cap for k, (cap, _) in flat.items()}, **opts)
        if not same_data:
            baseline = run_scan(str(src), source, **load_opts, **opts)
            where = ("the data file the scan report names is in neither the current folder "
                     "nor the report's" if report is not None and not report.data.synthetic
                     else "the scan report was made on synthetic inputs")
            result.notes.append(f"{where}: the before / after table compares scans on "
                                "synthetic inputs; pass --data")
        result.drift = job.drift(job.written_runner(pending), label_array)
        capped = {before.sites[k].name: neurons for k, (_, neurons) in flat.items()}
        result.changes = _changes(plan, baseline, after, job.compensation, result.notes,
                                  capped)
    except BaseException:
        _discard(pending)
        raise
    _install(pending, out)
    result.status = "patched"
    return result


def _file_mode() -> int:
    """The mode a new file gets from the umask, as open() would give it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _install(pending: Path, out: Path) -> None:
    """Move the verified model (and its ONNX weights file, if any) onto ``out``."""
    target = Path(os.path.realpath(out))  # a symlink stays and its target is replaced
    try:
        weights = pending.with_name(f"{pending.name}.data")
        if weights.exists():  # first: the model must never point at missing weights
            os.replace(weights, target.with_name(weights.name))
        os.replace(pending, target)
    except OSError as exc:
        raise DeadReluError(f"cannot write: {exc.strerror}", path=out) from None
    finally:
        _discard(pending)


def _discard(pending: Path) -> None:
    """Remove the temporary folder of :meth:`_Job.write_pending` and what is left in it."""
    shutil.rmtree(pending.parent, ignore_errors=True)


_DATA_KEYS = ("input_shape", "batch_size", "samples", "image_size", "mean", "std",
              "drop_columns")


def _open(open_data: Any, data: str | None, backend: Any, options: dict[str, Any]) -> Any:
    from deadrelu.batching import batch_plan, check_whole_batches, fixed_batch
    from deadrelu.data import parse_input_shapes

    shape = options.get("input_shape")
    shapes = parse_input_shapes(shape, backend.inputs) if shape else None
    guess = getattr(backend, "image_channels", None)
    fixed = fixed_batch(backend)  # an ONNX export with a fixed batch size: batches of that
    batch_size, samples = batch_plan(fixed, data is not None, options.get("batch_size"),
                                     options.get("samples"), getattr(backend, "path", None))
    source = open_data(data, backend.inputs, batch_size=batch_size, samples=samples,
                       input_shapes=shapes, image_size=options.get("image_size"),
                       mean=options.get("mean"), std=options.get("std"),
                       drop_columns=options.get("drop_columns", ()),
                       channels=guess() if callable(guess) else None)
    check_whole_batches(fixed, source.samples, getattr(backend, "path", None))
    return source


def _check_output(src: Path, out: Path | None, fmt: str, dry_run: bool, in_place: bool
                  ) -> str | None:
    if fmt == "torchscript":
        raise DeadReluError("TorchScript models cannot be patched; patch the eager model, "
                            "its .pt2 or its ONNX export", path=src)
    if out is None:
        if dry_run:
            return None
        raise DeadReluError("say where to write the patched model: -o FILE.pt2 | FILE.pt | "
                            "FILE.onnx (or --dry-run)")
    out_format = OUTPUT_FORMATS.get(out.suffix.lower())
    if out_format is None:
        raise DeadReluError("the output must end in .pt2 (torch.export), .pt / .pth (pickled "
                            "module) or .onnx", path=out)
    if fmt == "onnx" and out_format != "onnx":
        raise DeadReluError("an ONNX model is patched into an ONNX file: -o FILE.onnx", path=out)
    if fmt != "onnx" and out_format == "onnx":
        raise DeadReluError("a PyTorch model is patched into .pt2 or .pt, not .onnx (export "
                            "the patched .pt2 with torch.onnx.export)", path=out)
    if fmt == "torch-export" and out_format != "torch-export":
        raise DeadReluError("a torch.export program is patched into a .pt2 file", path=out)
    if out.exists() and out.resolve() == src.resolve() and not in_place:
        raise DeadReluError("refusing to write over the input model; choose another -o or "
                            "pass --in-place", path=out)
    parent = out.parent if str(out.parent) else Path(".")
    if not dry_run and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise DeadReluError("cannot write: the directory does not exist or is not writable",
                            path=out)
    if not dry_run and out.is_dir():
        raise DeadReluError("cannot write: is a directory", path=out)
    return out_format


def _importable_arch(arch: str) -> str:
    """``dir/file.py:f`` as ``dir.file:f`` when that module imports to the same file, so a
    pickled module names classes that plain ``torch.load`` can import."""
    import sys

    target, sep, attr = arch.rpartition(":")
    if not sep or not (target.endswith(".py") or "/" in target or os.sep in target):
        return arch
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as --arch resolves it: the current folder imports
    try:
        rel = Path(target).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return arch
    parts = rel.with_suffix("").parts
    if not parts or not all(p.isidentifier() for p in parts):
        return arch
    dotted = ".".join(parts)
    try:
        module = importlib.import_module(dotted)
    except Exception:
        return arch
    file = getattr(module, "__file__", None)
    if file and Path(file).resolve() == Path(target).resolve() and hasattr(module, attr):
        return f"{dotted}:{attr}"
    return arch


def _check_report(report: Any, info: Any, path: Any) -> None:
    if report.model.sha256 is None:
        raise DeadReluError("the scan report has no model sha256 (it scanned an in-memory "
                            "module), so it cannot be matched to this file", path=path)
    if info.sha256 != report.model.sha256:
        raise DeadReluError(f"the scan report is from another model: its sha256 "
                            f"{report.model.sha256[:12]}… is not {info.sha256[:12]}… of "
                            f"{info.path}", path=path)


def _check_report_sites(report: Any, backend: Any, source: Any, src: str,
                        load_opts: dict[str, Any], opts: dict[str, Any]) -> None:
    static = backend.static_sites() if hasattr(backend, "static_sites") else None
    if static is None:  # eager: the sites show up only when the model runs (one batch)
        from deadrelu.data import DataSource
        from deadrelu.scanner import scan as run_scan

        one = DataSource(source.description, source.synthetic, None,
                         loader=lambda: _first(source), path=source.path)
        static = [(s.name, s.info.kind) for s in run_scan(src, one, **load_opts,
                                                          **opts).sites]
    have = [(s.name, s.info.kind) for s in report.sites]
    ours = {n for n, _ in static}
    missing = [n for n, _ in have if n not in ours]
    if missing or len(have) != len(static):
        raise DeadReluError(f"the scan report's sites do not match the model: the report has "
                            f"{len(have)} sites, the model {len(static)}"
                            + (f"; not in the model: {', '.join(missing[:3])}" if missing
                               else ""))


def _first(source: Any) -> Any:
    for batch in source.batches():
        yield batch
        return


def _flat_tops(plan: Plan, before: Any, eps: float) -> dict[int, tuple[float, list[int]]]:
    """Rewritten ReLU6 sites that keep a flat top for some neurons (ELU's plain cap, or a
    slope above the cap below eps): their position among the sites -> (cap, those neurons).

    There the new activation is followed by min(h, cap …), which no scan sees as part of the
    site, so the re-scan counts those elements as active; it is asked to count the elements
    at or above the cap as well (scan's count_at_cap), and _changes takes them out."""
    position = {s.name: k for k, s in enumerate(before.sites)}
    out: dict[int, tuple[float, list[int]]] = {}
    for p in plan.active:
        rw = p.rewrite
        if rw is None or rw.cap is None or p.name not in position:
            continue
        neurons = [i for i in range(p.neurons)
                   if rw.cap_slopes is None or abs(rw.cap_slopes[i]) < eps]
        if neurons:
            out[position[p.name]] = (rw.cap, neurons)
    return out


def _dead_after(site: Any, flat: list[int] | None) -> list[int]:
    """The site's dead neurons after the rewrite. A neuron with a flat top is dead when it
    has no active element below the cap: the new activation's active set holds every z >=
    cap (ELU's and the ReLU side of PReLU / LeakyReLU's), so that count is active - at_cap."""
    dead = set(site.dead_indices())
    if flat:
        a = site.stats.arrays
        for i in flat:
            seen = int(a["finite"][i]) > 0
            if seen and int(a["active"][i]) - int(a["at_cap"][i]) == 0:
                dead.add(i)
    return sorted(dead)


def _changes(plan: Plan, before: Any, after: Any, comp: dict[str, str],
             notes: list[str], flat: dict[str, list[int]] | None = None) -> list[SiteChange]:
    # A rewrite neither adds nor removes sites, so the k-th site before is the k-th after
    # (functional sites are named after their kind and so change name).
    if len(before.sites) == len(after.sites):
        match = {b.name: (b, a) for b, a in zip(before.sites, after.sites, strict=True)}
    else:
        after_names = {s.name: s for s in after.sites}
        match = {b.name: (b, after_names.get(b.name)) for b in before.sites}
    out = []
    for p in plan.active:
        b, a = match.get(p.name, (None, None))
        assert p.rewrite is not None
        dead_before = b.dead_indices() if b is not None else p.dead
        dead_after = _dead_after(a, (flat or {}).get(p.name)) if a is not None else None
        if dead_after is not None:
            newly = sorted(set(dead_after) - set(dead_before))
            if newly:
                notes.append(f"{p.name}: {len(newly)} neuron(s) alive before are dead after "
                             f"({_some(newly)}): their input moved because sites upstream "
                             "changed; --compensate restores the means")
        out.append(SiteChange(
            p.name, a.name if a else None, p.kind, a.info.kind if a else None,
            p.rewrite.short(), p.neurons, len(dead_before),
            len(dead_after) if dead_after is not None else None,
            int(a.figures.negative_only.sum()) if a else None, len(p.changed_channels),
            comp.get(p.name)))
    return out


def _report_data(source: str, report: Path) -> str | None:
    """The data file a report names ("val.npz (500 samples)", "val.npz (32 of 500 samples)"
    with --samples), if it is where it says: relative to the current folder or the report."""
    import re

    name = re.sub(r" \((\d+ of )?\d+ samples\)$", "", source)
    for candidate in (Path(name), report.parent / name):
        if name and candidate.exists():
            return str(candidate)
    return None


def _some(items: list[int], n: int = 5) -> str:
    return ", ".join(map(str, items[:n])) + (" …" if len(items) > n else "")


class _Job:
    """The format-specific half: prepare (checks), rewrite, compensate, write, run."""

    def __init__(self, backend: Any, in_format: str, src: Path, out_format: str | None,
                 plan: Plan, before: Any, source: Any) -> None:
        self.backend, self.in_format, self.src = backend, in_format, src
        self.out_format, self.plan, self.before, self.source = out_format, plan, before, source
        self.compensation: dict[str, str] = {}
        self.patched: Any = None  # GraphModule | nn.Module | ModelProto
        self.original: Any = None
        self.outputs: dict[str, Any] = {}

    # ---- prepare: checks that may skip sites, on copies of the model
    def prepare(self) -> None:
        if self.out_format == "onnx":
            import onnx

            from deadrelu.patch.onnx_rewrite import check_onnx_sites

            self.original = onnx.load(str(self.src))
            self.patched = onnx.ModelProto()
            self.patched.CopyFrom(self.original)
            check_onnx_sites(self.patched, self.plan)
        elif self.out_format == "torch-export":
            from deadrelu.patch.torch_graph import check_graph_sites, export_module

            program = self.backend.program
            if program is None:
                program = export_module(self.backend.module, self.example())
                self.original = self.backend.module.eval()
            else:
                self.original = program.module()
            self.program = program
            # program.module() shares its parameters with the program: patch a deep copy, or
            # --compensate would move the original's biases too.
            with warnings.catch_warnings():  # torch's own pytree deprecation, on deepcopy
                warnings.simplefilter("ignore", FutureWarning)
                self.patched = copy.deepcopy(program.module())
            check_graph_sites(self.patched, self.plan)
        else:
            from deadrelu.patch.torch_modules import check_module_sites, unimportable_classes

            module = self.backend.module
            bad = unimportable_classes(module)
            if bad:
                raise DeadReluError(
                    f"a pickled module would name the class {bad[0]}, which plain torch.load "
                    "cannot import (it was loaded from a file path); make it importable as a "
                    "package module, or write -o FILE.pt2, which needs no user code")
            self.original = module.eval()
            self.patched = copy.deepcopy(module).eval()
            check_module_sites(self.patched, self.plan, self.before.sites)

    def example(self) -> list[Any]:
        import torch

        from deadrelu.patch.torch_graph import user_example

        batch = next(iter(self.source.batches()))
        names = [s.name for s in self.backend.inputs]
        dtype = module_dtype(self.backend.module) if self.backend.module is not None \
            else torch.float32
        return user_example(batch, names, [dtype] * len(names))

    def rewrite(self) -> None:
        if self.out_format == "onnx":
            from deadrelu.patch.onnx_rewrite import rewrite_onnx

            self.outputs = rewrite_onnx(self.patched, self.plan)
        elif self.out_format == "torch-export":
            from deadrelu.patch.torch_graph import rewrite_graph

            self.outputs = rewrite_graph(self.patched, self.plan)
        else:
            from deadrelu.patch.torch_modules import swap_modules

            swap_modules(self.patched, self.plan)

    # ---- running
    def _runner(self, fn: Any) -> Any:
        if self.out_format == "onnx":
            return onnx_runner(fn, self.backend, self.src.parent)
        if self.out_format == "torch-export" or self.backend.module is None:
            dtypes = [getattr(__import__("torch"), s.dtype, None) for s in self.backend.inputs]
            if self.backend.module is not None:
                dtypes = [module_dtype(self.backend.module)] * len(self.backend.inputs)
            return torch_runner(fn, self.backend.inputs, dtypes)
        return torch_runner(fn, self.backend.inputs,
                            [module_dtype(fn)] * len(self.backend.inputs))

    def patched_runner(self) -> Any:
        return self._runner(self.patched)

    def written_runner(self, out: Path) -> Any:
        if self.out_format == "onnx":
            return onnx_runner(out, self.backend, out.parent)
        import torch

        if self.out_format == "torch-export":
            return self._runner(torch.export.load(str(out)).module())
        return self._runner(torch.load(str(out), map_location="cpu", weights_only=False))

    def drift(self, after: Any, labels: Any) -> Drift:
        before = self._runner(self.src if self.out_format == "onnx" else self.original)
        return measure_drift(before, after, self.source.batches(), labels)

    def feed_all(self, fn: Any) -> None:
        run = self._runner(fn)
        for batch in self.source.batches():
            run(batch)

    # ---- bias compensation
    def compensate(self) -> dict[str, str]:
        if self.out_format == "onnx":
            return self._compensate_onnx()
        if self.out_format == "torch-export":
            return self._compensate_graph()
        return self._compensate_modules()

    def _compensate_graph(self) -> dict[str, str]:
        from deadrelu.patch.torch_graph import consumer_means, fold_graph_bias, graph_consumer

        found: dict[str, str] = {}
        consumers: list[tuple[str, str]] = []
        for p in self.plan.active:
            node, why = graph_consumer(self.outputs[p.name])
            if node is None:
                found[p.name] = f"not compensated: {why}"
            else:
                consumers.append((p.name, node.name))
        if not consumers:
            return found
        base = self.program.module()  # the unpatched graph: same node names
        ref = consumer_means(base, [c for _, c in consumers], self.feed_all)
        for site, name in consumers:
            now = consumer_means(self.patched, [name], self.feed_all)[name]
            fold_graph_bias(self.patched, name, now - ref[name])
            found[site] = f"bias of {_graph_label(self.patched, name)} absorbed the mean shift"
        return found

    def _compensate_modules(self) -> dict[str, str]:
        from deadrelu.patch.torch_modules import (
            fold_module_bias,
            module_consumers,
            module_input_means,
        )

        found: dict[str, str] = {}
        example = self.example()
        where = module_consumers(self.patched, self.plan, example)
        consumers = []
        for site, (path, why) in where.items():
            if path is None:
                found[site] = f"not compensated: {why}"
            else:
                consumers.append((site, path))
        if not consumers:
            return found
        ref = module_input_means(self.original, [c for _, c in consumers], self.feed_all)
        for site, path in consumers:
            now = module_input_means(self.patched, [path], self.feed_all)[path]
            fold_module_bias(self.patched, path, now - ref[path])
            found[site] = f"bias of {path} absorbed the mean shift"
        return found

    def _compensate_onnx(self) -> dict[str, str]:
        from deadrelu.patch.onnx_rewrite import fold_onnx_bias, onnx_consumer, onnx_input_means

        found: dict[str, str] = {}
        consumers = []
        for p in self.plan.active:
            node, why = onnx_consumer(self.patched, self.outputs[p.name])
            if node is None:
                found[p.name] = f"not compensated: {why}"
            else:
                consumers.append((p.name, node))
        if not consumers:
            return found

        def run(model: Any, names: list[str], sink: Any) -> None:
            fn = onnx_runner(model, self.backend, self.src.parent, outputs=names)
            for batch in self.source.batches():
                sink(dict(zip(names, fn(batch), strict=True)))

        originals = {n.name: n for n in self.original.graph.node}
        ref = onnx_input_means(self.original, [originals[n.name] for _, n in consumers], run)
        for site, node in consumers:
            now = onnx_input_means(self.patched, [node], run)[node.name]
            fold_onnx_bias(self.patched, node, now - ref[node.name])
            found[site] = f"bias of {node.name} ({node.op_type}) absorbed the mean shift"
        return found

    # ---- writing: a temporary file in the target folder, then one rename
    def write_pending(self, out: Path) -> Path:
        """The patched model written in a temporary folder next to ``out``, under out's name
        (an ONNX model's external weights beside it, as ``<name>.data``): :func:`_install`
        moves them onto ``out`` once verified, :func:`_discard` deletes them."""
        # A symlink is followed: the file it points at is replaced and the link stays.
        target = Path(os.path.realpath(out))
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
        try:
            if self.out_format == "onnx":
                self._write_onnx(tmp)
            elif self.out_format == "torch-export":
                import torch

                from deadrelu.patch.torch_graph import dynamic_shapes_of, reexport

                program = reexport(self.patched, self.example(), dynamic_shapes_of(self.program))
                torch.export.save(program, str(tmp))
            else:
                import torch

                torch.save(self.patched, str(tmp))
            for written in tmp.parent.iterdir():
                os.chmod(written, _file_mode())  # onnx writes its .data 0600
        except OSError as exc:
            _discard(tmp)
            raise DeadReluError(f"cannot write: {exc.strerror}", path=out) from None
        except BaseException:
            _discard(tmp)
            raise
        return tmp

    def _write_onnx(self, tmp: Path) -> None:
        import onnx

        from deadrelu.backends.onnx_graph import external_locations
        from deadrelu.patch.onnx_rewrite import check_written

        if external_locations(onnx.load(str(self.src), load_external_data=False)):
            _save_with_weights_beside(self.patched, tmp)
        else:
            onnx.save_model(self.patched, str(tmp))
        check_written(self.patched, tmp)


def _save_with_weights_beside(model: Any, path: Path) -> None:
    """``model`` at ``path`` with its larger weights in ``<name>.data`` beside it, as the
    source model kept them. onnx.save_model(save_as_external_data=True) would refuse when a
    file of that name exists in the current directory (it tests the relative location
    against the cwd, not the model's folder)."""
    import sys

    import onnx
    from onnx.external_data_helper import set_external_data

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # saving moves the bytes out of the tensors it is given
    for tensor in copy.graph.initializer:
        if tensor.HasField("raw_data") and sys.getsizeof(tensor.raw_data) >= 1024:
            set_external_data(tensor, f"{path.name}.data")
    onnx.save_model(copy, str(path))


def _graph_label(gm: Any, node_name: str) -> str:
    node = {n.name: n for n in gm.graph.nodes}[node_name]
    target = node.args[1].target if hasattr(node.args[1], "target") else node_name
    return str(target).rsplit(".", 1)[0]
