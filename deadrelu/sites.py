"""List a model's activation sites without scanning data: ``deadrelu sites``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SiteListing:
    """One activation site as the graph declares it."""

    name: str
    kind: str
    node: str = ""  # ONNX node that names it; "" for torch sites
    ops: str = ""  # ONNX nodes that make it up
    measured: bool = True
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_sites(model: str, *, arch: str | None = None, arch_kwargs: str | None = None,
               trust_pickle: bool = False, input_shape: str | None = None) -> list[SiteListing]:
    """Every activation site of ``model``, in execution order.

    ONNX graphs and ``.pt2`` programs are read without running anything. Eager models and
    TorchScript record their sites during a forward pass, so they run one synthetic sample
    (which needs the input shape: from the model, else ``--input-shape``).
    """
    from deadrelu.backends.onnx_backend import OnnxBackend
    from deadrelu.data import parse_input_shapes
    from deadrelu.data.synthetic import NoSyntheticInput
    from deadrelu.scanner import load_backend, scan

    backend, _, _ = load_backend(model, arch=arch, arch_kwargs=arch_kwargs,
                                 trust_pickle=trust_pickle)
    if input_shape:  # checked even where nothing runs: a wrong name is a mistake either way
        parse_input_shapes(input_shape, backend.inputs)
    if isinstance(backend, OnnxBackend):
        return [SiteListing(s.name, s.kind, s.node, " ".join(s.nodes), s.scanned, s.reason)
                for s in backend.sites]
    static = getattr(backend, "static_sites", lambda: None)()
    if static is not None:
        return [SiteListing(name, kind) for name, kind in static]
    try:
        result = scan(model, None, arch=arch, arch_kwargs=arch_kwargs,
                      trust_pickle=trust_pickle, input_shape=input_shape, samples=1,
                      batch_size=1)
    except NoSyntheticInput as exc:
        raise exc.without_data() from None  # sites has no --data to offer
    listed = [SiteListing(s.name, s.info.kind, s.info.module if s.info.call == "node" else "")
              for s in result.sites]
    listed += [SiteListing(n.split(" ")[1], "", measured=False, reason=n)
               for n in result.notes if n.startswith("site ") and "not measured" in n]
    return listed
