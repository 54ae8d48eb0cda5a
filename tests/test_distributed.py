"""torchrun: two gloo processes on the CPU give exactly the single-process scan.

The data are sharded by batch (batch i on rank i % 2), the per-neuron statistics combined with
torch.distributed as each declares (sum / min / max), and only rank 0 writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from tests.conftest import FIXTURES, GENERATED, ROOT

SCAN = ["-m", "deadrelu", "scan", str(GENERATED / FIXTURES["digits_cnn"]["files"]["state_dict"]),
        "--arch", FIXTURES["digits_cnn"]["arch"],
        "--data", str(GENERATED / FIXTURES["digits_cnn"]["data"]), "--format", "json"]


def _run(args: list[str], processes: int | None) -> subprocess.CompletedProcess[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={processes}"] if processes else [sys.executable])
    return subprocess.run([*launch, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=_env())


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _without_abs_sum(report: dict[str, Any]) -> tuple[dict[str, Any], list[list[float]]]:
    sums = [site["accumulators"].pop("abs_sum") for site in report["sites"]]
    return report, sums


@pytest.mark.parametrize("extra", [
    ["--batch-size", "48"],  # 11 batches: rank 0 runs 6, rank 1 runs 5
    ["--batch-size", "32", "--samples", "32"],  # 1 batch: rank 1 sees no site at all
], ids=["uneven-shards", "idle-rank"])
def test_two_processes_equal_one_process(extra: list[str]) -> None:
    single = _run([*SCAN, *extra], None)
    assert single.returncode == 0, single.stderr
    double = _run([*SCAN, *extra], 2)
    assert double.returncode == 0, double.stderr
    # Rank 0 alone writes: stdout is exactly one JSON document.
    one, one_sums = _without_abs_sum(json.loads(single.stdout))
    two, two_sums = _without_abs_sum(json.loads(double.stdout))
    assert two == one  # every count, extreme, derived figure, sample count and note
    for a, b in zip(one_sums, two_sums, strict=True):
        # A float64 sum: equal up to the order of the additions (stats.py).
        np.testing.assert_allclose(np.array(a, dtype=float), np.array(b, dtype=float),
                                   rtol=1e-12)
    assert one["summary"]["dead"] > 0 and one["data"]["samples"] == two["data"]["samples"]


def test_distributed_flag_outside_torchrun_is_a_one_line_error() -> None:
    result = _run([*SCAN, "--distributed"], None)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "torchrun" in lines[0], result.stderr
    assert result.stdout == ""


CHECK = ["-m", "deadrelu", "check", *SCAN[3:8], "--batch-size", "48", "--format", "json",
         "--max-dead-rate", "0.1", "--ignore", "no_such_site*"]


def test_check_under_torchrun_shards_and_reports_once() -> None:
    single = _run(CHECK, None)
    double = _run(CHECK, 2)
    # The limit fails: exit 1 from one process; torchrun exits non-zero when its ranks do.
    assert single.returncode == 1, single.stderr
    assert double.returncode != 0
    # Rank 0 alone prints the verdict (one JSON document, equal to the single process's)
    # and the warning about the glob.
    verdict = json.loads(double.stdout)
    assert verdict == json.loads(single.stdout)
    assert verdict["passed"] is False
    assert double.stderr.count("matches no site") == 1, double.stderr


def test_commands_that_do_not_shard_refuse_torchrun(tmp_path: Any) -> None:
    out = tmp_path / "patched.pt"
    result = _run(["-m", "deadrelu", "patch", *SCAN[3:8], "-o", str(out)], 2)
    assert result.returncode != 0
    line = "deadrelu: error: deadrelu patch does not run under torchrun"
    assert result.stderr.count(line) == 1, result.stderr  # rank 0 says it, once
    assert not out.exists() and result.stdout == ""


def test_a_rank_refusing_its_batch_ends_every_rank_with_one_line(tmp_path: Any) -> None:
    # Rank 1's share ends with a short batch the fixed-batch model cannot run. It says so,
    # naming its rank (its own count of samples would make a --samples hint wrong); rank 0
    # learns of it in the collective and says that, not a gloo traceback.
    import torch

    model = tmp_path / "b2.pt2"
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval()
    torch.export.save(torch.export.export(net, (torch.zeros(2, 4),)), str(model))
    (tmp_path / "short.py").write_text(
        "import numpy as np\n"
        "def batches():\n"
        "    return [{'x': np.ones((n, 4), np.float32)} for n in (2, 2, 2, 1)]\n")
    result = _run(["-m", "deadrelu", "scan", str(model), "--data",
                   f"{tmp_path / 'short.py'}:batches", "-o", str(tmp_path / "out.json")], 2)
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("deadrelu: error:")]
    assert len(errors) == 2, result.stderr
    assert any("on rank 1 gave a batch of 1 sample: feed batches of exactly 2" in ln
               and "--samples" not in ln for ln in errors), errors
    assert any(ln.startswith("deadrelu: error: rank 0: another rank stopped") for ln in errors)
    assert "deadrelu/" not in result.stderr  # no frame of ours: no traceback from deadrelu
    assert not (tmp_path / "out.json").exists()
