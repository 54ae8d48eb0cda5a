"""Run the original and the patched model side by side on the data and measure the drift.

Drift of the model's outputs (every floating output, all elements): max and mean absolute
difference, relative L2 (‖after − before‖ / ‖before‖), and, when the first output looks like
class scores (N, K) with K ≥ 2, the fraction of samples whose argmax is unchanged, plus the
accuracy before and after when the data carries labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.data import InputSpec
from deadrelu.errors import DeadReluError

Runner = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]
LABEL_KEYS = ("y", "label", "labels", "target", "targets")


@dataclass
class Drift:
    samples: int
    max_abs: float
    mean_abs: float
    rel_l2: float
    argmax_agreement: float | None = None
    accuracy_before: float | None = None
    accuracy_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_runner(fn: Any, inputs: Sequence[InputSpec], dtypes: Sequence[Any]) -> Runner:
    import torch

    def run(batch: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        args = []
        for spec, dt in zip(inputs, dtypes, strict=False):
            t = torch.from_numpy(np.ascontiguousarray(batch[spec.name]))
            if dt is not None and t.is_floating_point():
                t = t.to(dt)
            args.append(t)
        with torch.no_grad():
            out = fn(*args)
        return [t.detach().cpu().numpy() for t in _tensors(out)]

    return run


def _tensors(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def module_dtype(model: Any) -> Any:
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def onnx_runner(model_or_path: Any, backend: Any, base_dir: Path | None = None,
                outputs: Sequence[str] | None = None) -> Runner:
    """onnxruntime on a ModelProto or a path, fed through the ONNX backend's input checks."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # No graph fusions: a fused Conv+Relu and a plain Conv+PRelu round differently, and the
    # drift should measure the rewrite, not onnxruntime's kernel choice.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if base_dir is not None:
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                      str(base_dir))
    what = str(model_or_path) if isinstance(model_or_path, (str, Path)) \
        else model_or_path.SerializeToString()
    try:
        sess = ort.InferenceSession(what, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DeadReluError(f"onnxruntime cannot load the model: {exc}") from None
    names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]

    def run(batch: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(v) for v in sess.run(names, backend.feed(batch, "data"))]

    return run


def read_labels(data: str | None, key: str | None) -> np.ndarray | None:
    """Integer labels from an .npz (``--labels KEY``, else y / label(s) / target(s))."""
    if data is None or not str(data).endswith(".npz") or not Path(data).is_file():
        if key is not None:
            raise DeadReluError(f"--labels {key!r} needs --data FILE.npz holding that array")
        return None
    with np.load(data) as z:
        keys = [key] if key is not None else [k for k in LABEL_KEYS if k in z.files]
        if key is not None and key not in z.files:
            raise DeadReluError(f"--labels {key!r}: the file has no such array (it has: "
                                f"{', '.join(z.files)})", path=data)
        for k in keys:
            y = z[k]
            if y.ndim == 1 and y.dtype.kind in "iu":
                return y.astype(np.int64)
        if key is not None:
            raise DeadReluError(f"--labels {key!r} is not a 1-D integer array", path=data)
    return None


def measure_drift(before: Runner, after: Runner, batches: Iterable[Mapping[str, np.ndarray]],
                  labels: np.ndarray | None = None) -> Drift:
    n = 0
    max_abs, abs_sum, count, sq_diff, sq_ref = 0.0, 0.0, 0, 0.0, 0.0
    agree, scored = 0, 0
    correct_before, correct_after, labelled = 0, 0, 0
    for batch in batches:
        a_out, b_out = before(batch), after(batch)
        if len(a_out) != len(b_out):
            raise DeadReluError("the patched model returns a different number of outputs")
        for a, b in zip(a_out, b_out, strict=True):
            if a.shape != b.shape:
                raise DeadReluError(f"the patched model's output has shape {b.shape}, the "
                                    f"original's {a.shape}")
            if a.dtype.kind != "f":
                continue
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            finite = np.isfinite(a64) & np.isfinite(b64)
            d = np.abs(b64 - a64)[finite]
            if d.size:
                max_abs = max(max_abs, float(d.max()))
            abs_sum += float(d.sum())
            count += int(d.size)
            sq_diff += float((d * d).sum())
            sq_ref += float((a64[finite] ** 2).sum())
        rows = len(a_out[0]) if a_out and a_out[0].ndim else 1
        first_a, first_b = (a_out[0], b_out[0]) if a_out else (None, None)
        if first_a is not None and first_b is not None and first_a.ndim == 2 \
                and first_a.shape[1] >= 2 and first_a.dtype.kind == "f":
            pa, pb = first_a.argmax(axis=1), first_b.argmax(axis=1)
            agree += int((pa == pb).sum())
            scored += rows
            if labels is not None and n + rows <= len(labels):
                y = labels[n:n + rows]
                correct_before += int((pa == y).sum())
                correct_after += int((pb == y).sum())
                labelled += rows
        n += rows
    drift = Drift(n, max_abs, abs_sum / count if count else 0.0,
                  float(np.sqrt(sq_diff / sq_ref)) if sq_ref > 0 else float(sq_diff > 0))
    if scored:
        drift.argmax_agreement = agree / scored
    if labelled:
        drift.accuracy_before = correct_before / labelled
        drift.accuracy_after = correct_after / labelled
    return drift
