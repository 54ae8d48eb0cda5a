"""Per-neuron accumulators in the JSON report, packed when a site is very wide.

A site with up to :data:`PACK_ABOVE` neurons stores each accumulator as a plain JSON array
(integers, or numbers with null for ±Inf). Wider sites — a vocabulary-sized MLP, a
full-resolution feature map scanned per pixel — store each one as an object::

    {"packed": "zlib+base64", "dtype": "<i8" | "<f8", "length": N, "data": "…"}

the little-endian array bytes, zlib-compressed, base64-encoded: about 1-3 bytes per value
instead of 10-25, exact (infinities included), and read back by :func:`stats_from_dict`.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from deadrelu.stats import NEURON_FIELDS, NeuronStats

PACK_ABOVE = 65_536
ENCODING = "zlib+base64"


def pack(array: np.ndarray) -> dict[str, Any]:
    dtype = np.dtype(array.dtype).newbyteorder("<")
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"packed": ENCODING, "dtype": dtype.str, "length": int(array.size),
            "data": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


def unpack(obj: Mapping[str, Any], dtype: str) -> np.ndarray:
    if obj.get("packed") != ENCODING:
        raise ValueError(f"unknown packing {obj.get('packed')!r}")
    raw = zlib.decompress(base64.b64decode(obj["data"]))
    array = np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).astype(dtype)
    if array.size != int(obj["length"]):
        raise ValueError(f"packed array has {array.size} values, not {obj['length']}")
    return array


def stats_to_dict(stats: NeuronStats) -> dict[str, Any]:
    if stats.neurons <= PACK_ABOVE:
        return stats.to_dict()
    d: dict[str, Any] = {"samples": stats.samples, "elements": stats.elements}
    d.update({name: pack(stats.arrays[name]) for name in NEURON_FIELDS})
    return d


def stats_from_dict(d: Mapping[str, Any]) -> NeuronStats:
    if not any(isinstance(d.get(name), Mapping) for name in NEURON_FIELDS):
        return NeuronStats.from_dict(d)
    arrays = {}
    for name, (_, dtype, init) in NEURON_FIELDS.items():
        value = d[name]
        if isinstance(value, Mapping):
            arrays[name] = unpack(value, dtype)
        else:
            arrays[name] = np.asarray([init if x is None else x for x in value], dtype=dtype)
    return NeuronStats(arrays, int(d["samples"]), int(d["elements"]))
