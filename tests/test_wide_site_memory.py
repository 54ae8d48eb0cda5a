"""Wide sites: one element per (sample, neuron), hundreds of thousands of neurons.

A Linear layer's activation holds one value per (sample, neuron), so any per-(sample,
neuron) figure the scan keeps is as large as the activation itself. The statistics of such a
site must still be exact (checked against the brute-force reference of tests/reference.py),
and the scan's peak memory must stay that of plain inference plus O(neurons).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from deadrelu import scan
from tests.reference import record, reference_sites

WIDE = 300_000  # x 4 samples per batch: more than measure._PART elements per activation
BATCH = 4
MiB = 2**20


def _assert_matches_reference(model: nn.Module, x: np.ndarray, batch: int = BATCH,
                              cap: float | None = None) -> None:
    result = scan(model, x, batch_size=batch)
    batches = list(torch.from_numpy(x).split(batch))
    reference = reference_sites(record(model, batches),
                                [s.info.channel_axis for s in result.sites])
    assert len(reference) == len(result.sites) == 1
    site, ref = result.sites[0], reference[0]
    a = site.stats.arrays
    assert site.info.neurons == ref.neurons
    assert site.stats.samples == ref.samples
    for name in ("active", "active_samples", "positive", "finite"):
        np.testing.assert_array_equal(a[name], getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(a["max_pre"], ref.max_pre)
    np.testing.assert_array_equal(a["min_pre"], ref.min_pre)
    np.testing.assert_allclose(a["abs_sum"], ref.abs_sum, rtol=1e-6, atol=1e-6)
    if cap is not None:
        z = np.moveaxis(np.concatenate([b.numpy() for b in batches]), site.info.channel_axis, 0)
        z = z.reshape(z.shape[0], -1)
        np.testing.assert_array_equal(a["at_cap"], ((z >= cap) & np.isfinite(z)).sum(axis=1))
    assert site.dead_indices() == ref.dead


def _planted(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Normal values, every fifth neuron (last axis) dead, 0 and 6 planted exactly."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x[..., ::5] = -np.abs(x[..., ::5]) - 1
    flat = x.reshape(-1)
    flat[1::97] = 0.0
    flat[2::89] = 6.0
    return x


def test_wide_linear_site_with_planted_dead_neurons() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, WIDE), nn.ReLU(), nn.Linear(WIDE, 2)).eval()
    with torch.no_grad():
        model[0].bias[::3] = -1000.0  # planted dead
    x = np.random.default_rng(0).standard_normal((3 * BATCH, 8)).astype(np.float32)
    _assert_matches_reference(model, x)
    dead = scan(model, x, batch_size=BATCH).sites[0].dead_indices()
    assert set(range(0, WIDE, 3)) <= set(dead)


@pytest.mark.parametrize("act, cap", [(nn.ReLU(), None), (nn.ReLU6(), 6.0),
                                      (nn.LeakyReLU(0.1), None), (nn.Sigmoid(), None),
                                      (nn.GELU(), None)],
                         ids=["relu", "relu6", "leaky_relu", "sigmoid", "gelu"])
def test_wide_site_statistics_are_exact(act: nn.Module, cap: float | None) -> None:
    # The activation is the model's first layer: its input is the data, planted values and all.
    _assert_matches_reference(nn.Sequential(act), _planted((3 * BATCH, WIDE)), cap=cap)


def test_wide_site_with_non_finite_rows() -> None:
    # Batches holding NaN or ±Inf take the masked path, the others the fast one.
    x = _planted((4 * BATCH, WIDE), seed=1)
    x[1, :1000] = np.nan  # part of a row
    x[BATCH + 2, :] = np.inf  # a whole row
    x[2 * BATCH, 5::7] = -np.inf
    _assert_matches_reference(nn.Sequential(nn.ReLU6()), x, cap=6.0)


@pytest.mark.parametrize("shape", [(3, 2, 600_000), (5, 3, 100_000)],
                         ids=["one-sample-parts", "several-sample-parts"])
@pytest.mark.parametrize("act", [nn.ReLU(), nn.GELU()], ids=["relu", "gelu"])
def test_large_samples_with_several_elements_per_neuron(shape: tuple[int, ...],
                                                        act: nn.Module) -> None:
    # (batch, sequence, neurons): each part's per-sample figures are folded in before the next.
    _assert_matches_reference(nn.Sequential(act), _planted(shape, seed=2), batch=shape[0])


PROBE = textwrap.dedent("""
    import json, os, sys
    import numpy as np, torch
    from torch import nn
    from deadrelu import scan

    mode, neurons, samples, batch = sys.argv[1], *map(int, sys.argv[2:])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, neurons), nn.ReLU(), nn.Linear(neurons, 2)).eval()
    x = np.random.default_rng(0).standard_normal((samples, 4)).astype(np.float32)
    if mode == "scan-nan":  # a NaN sample in every batch: every batch takes the masked path
        x[::batch, 0] = np.nan

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the resident set's high-water mark
    base = rss()
    if mode == "plain":
        with torch.no_grad():
            for i in range(0, samples, batch):
                model(torch.from_numpy(x[i:i + batch]))
    else:
        scan(model, x, batch_size=batch)
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"peak": hwm - base}))
""")


def _peak(mode: str, neurons: int, samples: int, batch: int) -> int:
    # glibc returns every large block on free: the high-water mark is what a run holds.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(neurons), str(samples),
                          str(batch)], env=env, capture_output=True, text=True, timeout=300,
                         check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak"])


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="needs Linux /proc/self/clear_refs to reset the high-water mark")
def test_wide_site_scan_peaks_like_plain_inference() -> None:
    # One 500,000-neuron ReLU site, batches of 64: an activation is 122 MiB, and plain
    # inference holds two (the Linear's output and the ReLU's). Per-(sample, neuron) figures
    # of a whole batch would add several activations; accumulators add ~100 B per neuron.
    neurons = 500_000
    plain = _peak("plain", neurons, 128, 64)
    assert plain > 200 * MiB
    # "scan-nan": the masked path (every GPU batch, every batch holding NaN / Inf) too.
    for mode in ("scan", "scan-nan"):
        scanned = _peak(mode, neurons, 128, 64)
        assert scanned <= 1.1 * plain + 160 * neurons, (mode, scanned / MiB, plain / MiB)
