"""Site names from the module scopes in the node names of TorchScript-based ONNX exports.

``torch.onnx.export(..., dynamo=False)`` records no module metadata, but names every node by
the module scopes it ran in: ``/layer1/layer1.0/relu/Relu``. Each scope segment is the module's
qualified name from its last non-numeric part on (``layer1.0`` under ``layer1``, ``relu``
under ``layer1.0``); a module's second call gets ``_1`` on its segment (``relu_1``), and the
last component is ``OpType[_k]``. Module classes are not recorded, so an activation module
(``nn.ReLU``: site ``relu``) is told from a module calling a functional activation (site
``block/relu``) by what its scope holds. Where the names do not settle it, None: the caller
keeps the node name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_CALL_SUFFIX = re.compile(r"_\d+$")


def _scope(name: str) -> str | None:
    """``/a/a.0/Relu_2`` -> ``/a/a.0/``; None for a name that is not scope-shaped."""
    if not name.startswith("/") or name.endswith("/"):
        return None
    return name[: name.rindex("/") + 1]


def _atoms(scope: str) -> list[str]:
    # A segment is the qualified name from its last non-numeric part on: its last part is
    # the one this level adds to the module path.
    return [seg.rsplit(".", 1)[-1] for seg in scope.strip("/").split("/") if seg]


class LegacyScopes:
    """The scopes of one graph's node names, and the sites' names they determine."""

    def __init__(self, nodes: Iterable[Any], site_nodes: Iterable[str],
                 module_types: Mapping[str, str] | None = None,
                 activation_classes: frozenset[str] = frozenset()) -> None:
        claimed = set(site_nodes)
        self.ops: dict[str, int] = {}  # scope -> how many ops are named directly in it
        self.foreign: set[str] = set()  # scopes holding an op that belongs to no site
        self.parents: set[str] = set()  # scopes that hold a deeper scope (child modules)
        for node in nodes:
            scope = _scope(node.name)
            if scope is None or not _op_named(node):
                continue
            # Constants are the exporter's scalars for the activation's own formula.
            if node.op_type != "Constant":
                self.ops[scope] = self.ops.get(scope, 0) + 1
                if node.name not in claimed:
                    self.foreign.add(scope)
            parts = scope.split("/")
            for i in range(1, len(parts) - 1):
                self.parents.add("/".join(parts[:i]) + "/")
        self.paths = {".".join(_atoms(s)[:i + 1]) for s in [*self.ops, *self.parents]
                      for i in range(len(_atoms(s)))}
        self.module_types = module_types
        self.activation_classes = activation_classes

    def module_path(self, scope: str) -> str:
        """The module path of a scope, a repeated call's ``_k`` taken off where the path
        without it is a module of this graph too (``relu_1`` -> ``relu``)."""
        path: list[str] = []
        for atom in _atoms(scope):
            plain = _CALL_SUFFIX.sub("", atom)
            if plain != atom and ".".join([*path, plain]) in self.paths:
                atom = plain
            path.append(atom)
        return ".".join(path)

    def base(self, kind: str, node: Any, nodes: list[str]) -> str | None:
        """The eager name of a site (``kind``, named by ``node``, made of ``nodes``) before
        call numbering, or None where the scopes leave it open."""
        scope = _scope(node.name)
        if scope is None or scope not in self.ops or any(_scope(n) != scope for n in nodes):
            return None
        if scope == "/":
            return f"root/{kind}"
        path = self.module_path(scope)
        if self.module_types is not None and path in self.module_types:
            known = self.module_types[path] in self.activation_classes
            return path if known else f"{path}/{kind}"
        if scope in self.parents or scope in self.foreign:
            return f"{path}/{kind}"  # a module that also runs other ops or child modules
        if self.ops[scope] == len(set(nodes)):
            return path  # the scope holds this activation alone: an activation module
        # Only activations, several calls: one module's repeated calls merged into one
        # scope, or a module applying several functional activations. Undecided.
        return None


def _op_named(node: Any) -> bool:
    """Whether the node's last name component is its op type, as the exporter writes it."""
    last = node.name.rsplit("/", 1)[-1]
    return _CALL_SUFFIX.sub("", last) == node.op_type
