"""After a ReLU6 rewrite, the dead count includes neurons stuck at a flat top.

A rewrite of ReLU6 is the new activation followed by a min with the cap (design: patch/plan.py).
Where the slope above the cap is below eps (ELU's plain cap, --alpha 0, or the live channels
of a per-neuron PReLU) a neuron whose pre-activation never falls strictly below the cap, in
the new activation's active region, passes no gradient. The record's dead-after figures are
checked against a brute-force count on the patched ONNX graph itself: every site's input is
marked as an output, run through onnxruntime, and each element's derivative of
min(act(z), cap + s_up (act(z) - cap)) is decided from the graph's own slopes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from deadrelu.activations import active_set
from tests.conftest import FIXTURES, GENERATED
from tests.test_cli import run

F = FIXTURES["relu6_dead_high"]
EPS = 1e-3
TARGETS = {"prelu": ["--to", "prelu"], "prelu-alpha0": ["--to", "prelu", "--alpha", "0"],
           "elu": ["--to", "elu"], "leaky-tiny": ["--to", "leaky", "--alpha", "0.0001"]}


def _brute_dead(model_path: Path, data: np.ndarray) -> list[int]:
    model = onnx.load(str(model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    acts = [n for n in model.graph.node if n.op_type in ("PRelu", "Elu", "LeakyRelu")]
    for n in acts:
        model.graph.output.append(onnx.helper.make_tensor_value_info(n.input[0], 1, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    zs = sess.run([n.input[0] for n in acts], {sess.get_inputs()[0].name: data})
    dead = []
    for k, (node, z) in enumerate(zip(acts, zs, strict=True)):
        c = z.shape[1]
        prefix = f"deadrelu/patch/{k}/"
        cap = float(inits[prefix + "cap"])
        s_up = np.broadcast_to(inits.get(prefix + "cap_slope", np.zeros(1)).reshape(-1), (c,))
        zc = np.moveaxis(z, 1, -1).reshape(-1, c)  # (elements, channel)
        if node.op_type == "Elu":
            alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
            lo = np.float32(active_set("elu", EPS, alpha=alpha)[0].lo)
            below = (zc >= lo) & (zc < cap)
        else:
            slope = (inits[node.input[1]].reshape(-1) if node.op_type == "PRelu"
                     else np.full(1, next(a.f for a in node.attribute if a.name == "alpha")))
            slope = np.broadcast_to(slope, (c,))
            below = ((zc <= 0) & (np.abs(slope) >= EPS)) | ((zc > 0) & (zc < cap))
        above = (zc >= cap) & (np.abs(s_up) >= EPS)
        dead.append(int((~(below | above).any(axis=0)).sum()))
    return dead


@pytest.mark.parametrize("target", list(TARGETS))
def test_dead_after_counts_the_flat_top(target: str, tmp_path: Path) -> None:
    data = np.load(GENERATED / F["data"])
    x = data[F["input"]]
    records = {}
    for fmt, out in (("onnx", "p.onnx"), ("export", "p.pt2"), ("state_dict", "q.pt2")):
        extra = ["--arch", F["arch"]] if fmt == "state_dict" else []
        r = run("patch", str(GENERATED / F["files"][fmt]), *extra, "--data",
                str(GENERATED / F["data"]), *TARGETS[target], "-o", str(tmp_path / out),
                "-f", "json")
        assert r.exit_code == 0, r.output
        records[fmt] = [c["dead_after"] for c in json.loads(r.stdout)["changed_sites"]]
    assert records["onnx"] == _brute_dead(tmp_path / "p.onnx", x)
    assert records["export"] == records["state_dict"] == records["onnx"]
    if target == "prelu-alpha0":  # the model is unchanged: so is every count
        assert records["onnx"] == [len(s["dead"]) for s in F["sites"]]
