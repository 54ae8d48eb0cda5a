"""Capturing never changes what the model computes, and always cleans up after itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deadrelu import DeadReluError, scan
from deadrelu.backends.sites import SiteRegistry
from deadrelu.backends.torch_eager import capture
from deadrelu.stats import Settings
from tests.conftest import build_eager, fixture_data


def _captured_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, SiteRegistry]:
    registry = SiteRegistry(Settings(), None, torch.device("cpu"))
    with torch.no_grad(), capture(model, registry):
        registry.begin_forward()
        out = model(x)
    return out, registry


@pytest.mark.parametrize("name", ["transformer_mlp", "inplace", "functional", "reuse_relu"])
def test_outputs_with_and_without_capture_are_identical(name: str) -> None:
    model = build_eager(name)
    x = fixture_data(name)
    with torch.no_grad():
        plain = model(x.clone())
    captured, registry = _captured_forward(model, x.clone())
    assert registry.infos, "the capture saw no site"
    assert torch.equal(plain, captured)
    with torch.no_grad():
        assert torch.equal(model(x.clone()), plain)  # nothing left behind


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


def test_transformer_fast_path_is_kept_and_its_hidden_activation_reported() -> None:
    model = _encoder()
    x = torch.randn(4, 6, 16)
    with torch.no_grad():
        plain = model(x)
    captured, registry = _captured_forward(model, x)
    assert torch.equal(plain, captured)
    names = list(registry.infos)
    # Either the slow path ran and its functional ReLU is a site, or the fused kernel ran and
    # the scan says it could not see inside: never silently missed.
    for i in range(2):
        seen = f"layers.{i}/relu" in names
        noted = any(n.startswith(f"layers.{i}:") for n in registry.notes)
        assert seen != noted


def test_no_fast_path_scans_every_transformer_activation() -> None:
    model = _encoder()

    def data() -> list[torch.Tensor]:
        return [torch.randn(8, 6, 16)]

    import sys
    import types

    mod = types.ModuleType("_encoder_data")
    mod.data = data  # type: ignore[attr-defined]
    sys.modules["_encoder_data"] = mod
    result = scan(model, "_encoder_data:data", fast_path=False)
    assert [s.name for s in result.sites] == ["layers.0/relu", "layers.1/relu"]
    assert all(s.info.neurons == 32 for s in result.sites)
    assert torch.backends.mha.get_fastpath_enabled()  # restored


def _all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_and_mode_removed_and_training_mode_restored_even_on_error() -> None:
    model = build_eager("planted_relu").train()

    class Boom(Exception):
        pass

    def broken(*_: object) -> None:
        raise Boom

    handle = model.act2.register_forward_hook(broken)
    before = _all_hooks(model)
    with pytest.raises(Boom):
        scan(model, None, input_shape="1,3,8,8")
    handle.remove()
    assert _all_hooks(model) == before - 1
    assert model.training
    # no function mode left on the stack: the next op is not intercepted
    assert not torch.overrides.has_torch_function((torch.zeros(1),))
    result = scan(model, None, input_shape="1,3,8,8")
    assert model.training and [s.name for s in result.sites] == ["act1", "act2"]


def _modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


@pytest.mark.parametrize("fails", [False, True])
def test_every_submodules_own_mode_comes_back(fails: bool) -> None:
    # A frozen BatchNorm (eval inside a training model) and an MC-dropout (train inside an
    # eval model): model.train(flag) after the scan would overwrite both.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Dropout(0.5), nn.ReLU())).train()
    model[1].eval()
    inner = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.ReLU()).eval()
    inner[1].train()
    for m in (model, inner):
        before = _modes(m)
        if fails:
            handle = m[-1].register_forward_hook(lambda *_: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                scan(m, None, input_shape="1,3,8,8" if m is model else "1,3")
            handle.remove()
        else:
            scan(m, None, input_shape="1,3,8,8" if m is model else "1,3")
        assert _modes(m) == before
    mean = model[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 8))  # a training step: the frozen BatchNorm stays frozen
    assert torch.equal(model[1].running_mean, mean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_callers_model_stays_where_it_was() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU()).cuda().eval()
    weight = model[0].weight
    scan(model, None, input_shape="1,3", device="cpu")
    assert all(t.device.type == "cuda" for t in (*model.parameters(), *model.buffers()))
    assert model[0].weight is weight  # the same Parameter: an optimizer keeps working


def test_data_that_does_not_fit_names_the_input_and_both_shapes() -> None:
    model = build_eager("planted_relu")
    with pytest.raises(DeadReluError) as err:
        scan(model, None, input_shape="1,5,8,8")
    text = str(err.value)
    assert "'x' has shape (32, 5, 8, 8)" in text and "expects 3 channels" in text
