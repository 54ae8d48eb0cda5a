"""The --device a scan runs on: parsed and checked before any model or data is touched."""

from __future__ import annotations

from typing import Any

from deadrelu.errors import DeadReluError

_KINDS = "cpu, cuda, cuda:1, mps"


def torch_device(spec: str) -> Any:
    """``spec`` as a torch.device this machine has, or a DeadReluError saying why not."""
    import torch

    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DeadReluError(f"--device {spec!r} is not a torch device ({_KINDS})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeadReluError(f"--device {spec}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeadReluError(f"--device {spec}: this machine has {count} CUDA device"
                                f"{'s' if count != 1 else ''} (cuda:0 .. cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeadReluError(f"--device {spec}: MPS (Apple GPU) is not available on this "
                                "machine")
    elif dev.type != "cpu":
        # meta tensors hold no values; xpu, hpu … are untested here.
        raise DeadReluError(f"--device {spec}: deadrelu runs on {_KINDS}")
    return dev
