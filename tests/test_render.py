"""Text renderings: what a narrow console, a tiny sample or a format keeps and says."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from deadrelu.diff import diff_results
from deadrelu.report import render
from deadrelu.report.gate_render import render_diff_table
from tests.conftest import FIXTURES, GENERATED, build_eager, fixture_data
from tests.gate_helpers import cli, data_path, model_args


@pytest.mark.parametrize("share, text", [
    (0.0012, "<1"), (0.004, "<1"), (0.005, "<1"), (0.0051, "1"), (0.33, "33"),
    (0.9985, ">99"), (0.995, ">99"), (0.994, "99"), (0.0, "0"), (1.0, "100"),
])
def test_whole_percent_never_rounds_a_live_neuron_to_0_or_100(share: float, text: str) -> None:
    assert render._whole_percent(share) == text


def test_the_active_column_of_a_scan() -> None:
    import deadrelu

    result = deadrelu.scan(build_eager("digits_cnn"), fixture_data("digits_cnn").numpy())
    for site in result.sites:
        f = site.figures
        live = f.active_fraction[~f.dead & ~f.unobserved]
        low, high = render.activity_range(site)[:-1].split("–")
        assert low == render._whole_percent(float(live.min()))
        assert high == render._whole_percent(float(live.max()))
        assert low != "0"  # a live neuron is active somewhere


def test_diff_headers_stay_whole_at_any_width() -> None:
    """Long died / revived lists made rich fold their headers ("di/ed")."""
    import torch

    import deadrelu

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 600), torch.nn.ReLU(),
                                torch.nn.Linear(600, 50), torch.nn.ReLU())
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    before = deadrelu.scan(model, x)
    with torch.no_grad():
        model[0].bias[::3] = -100.0  # 200 neurons die
        model[2].bias[::2] = 100.0  # and some revive
    diff = diff_results(before, deadrelu.scan(model, x), "a.json", "b.json")
    assert len(diff.sites[0].died) >= 150
    for width in (50, 60, 80, 100):
        console = Console(width=width, record=True, color_system=None, file=io.StringIO())
        render_diff_table(diff, console)
        text = console.export_text()
        header = next(line for line in text.splitlines() if line.strip().startswith("site"))
        assert "died" in header.split() and "revived" in header.split(), (width, header)
        assert "died" in text and "revived" in text


def test_sites_of_a_torch_export_have_no_empty_onnx_column() -> None:
    pt2 = str(GENERATED / FIXTURES["digits_cnn"]["files"]["export"])
    table = cli("sites", pt2)
    assert table.exit_code == 0, table.stderr
    assert "ONNX nodes" not in table.stdout and "features.3" in table.stdout
    assert table.stdout.splitlines()[0] == f"3 activation sites of {pt2}"
    md = cli("sites", pt2, "-f", "markdown").stdout
    assert md.splitlines()[0] == "| site | kind | measured |"
    onnx = cli("sites", str(GENERATED / FIXTURES["digits_cnn"]["files"]["onnx"]),
               "-f", "markdown").stdout
    assert onnx.splitlines()[0] == "| site | kind | ONNX nodes | measured |"


def test_per_neuron_markdown_has_the_tables_columns() -> None:
    res = cli("scan", *model_args("planted_relu"), "--data", data_path("planted_relu"),
              "--per-neuron", "act1", "-f", "markdown")
    assert res.exit_code == 0, res.stderr
    header = next(line for line in res.stdout.splitlines() if line.startswith("| neuron"))
    assert header == ("| neuron | status | active % | samples % | max pre | min pre | "
                      "mean \\|h\\| | dormant score |")
    rows = [line for line in res.stdout.splitlines() if line.startswith("| 0 |")]
    assert len(rows) == 1 and rows[0].count("|") == header.count("|") - 2  # \| escapes


def test_a_config_plot_can_be_switched_off(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deadrelu.toml").write_text("plot = true\n")
    monkeypatch.chdir(tmp_path)
    args = ["scan", *model_args("planted_relu"), "--data", data_path("planted_relu")]
    with_plot, without = cli(*args), cli(*args, "--no-plot")
    assert with_plot.exit_code == without.exit_code == 0
    assert len(with_plot.stdout) > len(without.stdout)
    assert cli(*args, "--no-compile").exit_code == 0


def test_too_few_samples_for_the_rule_of_three_say_so() -> None:
    for n, bounded in ((3, False), (4, True)):
        res = cli("scan", *model_args("planted_relu"), "--data", data_path("planted_relu"),
                  "-n", n)
        text = " ".join(res.stdout.split())
        assert ("fires on fewer than 75.00%" in text) == bounded, text
        assert ("3 samples are too few to bound" in text) == (not bounded), text
    doc = json.loads(cli("scan", *model_args("planted_relu"), "--data",
                         data_path("planted_relu"), "-n", 3, "-f", "json").stdout)
    assert doc["summary"]["fire_rate_bound_95"] == pytest.approx(1.0)
    assert np.isfinite(doc["summary"]["fire_rate_bound_95"])


class _Branchy(torch.nn.Module):
    """Samples whose first feature is above 1.5 take r1 (one neuron dead), the rest r2."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)
        self.r1, self.r2 = torch.nn.ReLU(), torch.nn.ReLU()
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(4, 3))
            self.lin.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -1000.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rare = x[:, 0] > 1.5
        return torch.cat([self.r1(self.lin(x[rare])), self.r2(self.lin(x[~rare]) + 2000)])


def test_the_confidence_bound_counts_the_samples_the_dead_site_saw() -> None:
    from deadrelu import scan
    from deadrelu.report.render import summary_lines

    x = np.random.default_rng(0).standard_normal((400, 3)).astype(np.float32)
    rare = int((x[:, 0] > 1.5).sum())
    result = scan(_Branchy().eval(), x, batch_size=400)
    assert [s.name for s in result.sites if s.dead_count] == ["r1"] and 0 < rare < 400
    assert result.rule_of_three() == pytest.approx(3 / rare)
    assert result.to_dict()["summary"]["fire_rate_bound_95"] == pytest.approx(3 / rare)
    line = " ".join(summary_lines(result))
    assert f"no activation on {rare} samples (the fewest a site with dead neurons saw)" in line


def test_one_of_a_kind_is_singular() -> None:
    from deadrelu import scan
    from deadrelu.report.render import summary_lines

    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.ReLU()).eval()
    result = scan(model, np.ones((1, 3), np.float32))
    text = " ".join(summary_lines(result))
    assert "; 1 sample scanned" in text and " of 1 neuron " in text
    assert " of 1 site;" in text and "1 sample is too few" in text and "1 samples" not in text
