"""Site names from the module scopes in the node names of TorchScript-based ONNX exports.

``torch.onnx.export(..., dynamo=False)`` records no module metadata, but names every node by
the module scopes it ran in: ``/layer1/layer1.0/relu/Relu``. Each scope segment is the module's
qualified name from its last non-numeric part on (``layer1.0`` under ``layer1``, ``relu``
under ``layer1.0``, ``seq.0`` under ``enc/seq``); only called modules get a scope, so a
ModuleList's item sits directly under the list's parent, its segment carrying the list's name
(``/acts.0/``, ``/enc/layers.0/``). The module path is rebuilt segment by segment: a segment
that continues the path's last segment with numeric parts (``layer1.0`` after ``layer1``)
extends it by those parts, any other is appended whole (``enc`` + ``layers.0``).

A scope whose full name was given out already gets ``_k`` on its last segment (a module's
second call: ``relu_1``; a block's child on the block's second call: ``/blk/act_1/``), and the
last component is ``OpType[_k]``. The exporter hands out scope names in node order, so
``X_k`` is taken for a repeated call of ``X`` only where a scope ``X`` under the same parent
comes earlier in the graph; otherwise ``X_k`` is the module's own name (``self.relu_1``
called before ``self.relu``). Module classes are not recorded, so an activation module
(``nn.ReLU``: site ``relu``) is told from a module calling a functional activation (site
``block/relu``) by what its scope holds. Where the names do not settle it, None: the caller
keeps the node name.

Limits, where names alone cannot tell:

* a module ``relu`` called before a module really named ``relu_1``: ``relu_1`` is read as
  ``relu``'s second call (and where ``relu`` runs twice the exporter merges its second call
  into ``relu_1``'s scope, which is then left open);
* a module whose ModuleList child has the module's own name (``x.x.0``, segment ``x.0``
  under ``x``) is read as the module's item ``x.0``.
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


def _segments(scope: str) -> list[str]:
    """``/a/a.0/`` -> ``["a", "a.0"]``."""
    return [seg for seg in scope.strip("/").split("/") if seg]


def _tail(path: str) -> str:
    """The segment the exporter writes for a module path: from its last non-numeric part on
    (``enc.layers.0`` -> ``layers.0``; an all-numeric path whole: ``0.1``)."""
    atoms = path.split(".")
    for i in range(len(atoms) - 1, -1, -1):
        if not atoms[i].isdigit():
            return ".".join(atoms[i:])
    return path


def _join(path: str, segment: str) -> str:
    """The module path of ``segment`` in a scope under the module at ``path``."""
    if not path:
        return segment
    tail = _tail(path)
    rest = segment[len(tail) + 1:]
    if segment.startswith(tail + ".") and all(a.isdigit() for a in rest.split(".")):
        return f"{path}.{rest}"  # a Sequential's item: layer1.0 under layer1
    return f"{path}.{segment}"  # a child, or a ModuleList's item: layers.0 under enc


class LegacyScopes:
    """The scopes of one graph's node names, and the sites' names they determine."""

    def __init__(self, nodes: Iterable[Any], site_nodes: Iterable[str],
                 module_types: Mapping[str, str] | None = None,
                 activation_classes: frozenset[str] = frozenset()) -> None:
        claimed = set(site_nodes)
        # scope (and each scope above it) -> the position of its first node in the graph
        self.first: dict[str, int] = {}
        self.ops: dict[str, int] = {}  # scope -> how many ops are named directly in it
        self.foreign: set[str] = set()  # scopes holding an op that belongs to no site
        self.parents: set[str] = set()  # scopes that hold a deeper scope (child modules)
        for index, node in enumerate(nodes):
            scope = _scope(node.name)
            if scope is None:
                continue
            parts = scope.split("/")
            for i in range(2, len(parts)):
                self.first.setdefault("/".join(parts[:i]) + "/", index)
            if not _op_named(node):
                continue
            # Constants are the exporter's scalars for the activation's own formula.
            if node.op_type != "Constant":
                self.ops[scope] = self.ops.get(scope, 0) + 1
                if node.name not in claimed:
                    self.foreign.add(scope)
            for i in range(1, len(parts) - 1):
                self.parents.add("/".join(parts[:i]) + "/")
        self.module_types = module_types
        self.activation_classes = activation_classes

    def module_path(self, scope: str) -> str:
        """The module path of a scope, a repeated call's ``_k`` taken off where the scope
        without it comes earlier in the graph (``relu_1`` -> ``relu``)."""
        path, above = "", "/"
        for segment in _segments(scope):
            here = f"{above}{segment}/"
            plain = _CALL_SUFFIX.sub("", segment)
            if plain != segment and self._earlier(f"{above}{plain}/", here):
                segment = plain
            path = _join(path, segment)
            above = here
        return path

    def _earlier(self, scope: str, than: str) -> bool:
        """Whether ``scope`` has a node before ``than`` has one."""
        first, other = self.first.get(scope), self.first.get(than)
        return first is not None and (other is None or first < other)

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
