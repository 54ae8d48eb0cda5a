"""Sample data for a scan: files, image folders, user functions or synthetic noise, as batches.

:func:`open_data` turns the ``--data`` value into a :class:`DataSource`, whose ``batches()``
yields ``{input name: array}`` dicts with the batch on axis 0. Every problem the user can fix
raises :class:`~deadrelu.errors.DeadReluError` naming the file. Large inputs stay on disk:
``.npy`` files are memory-mapped and ``.npz`` arrays are only read when iterated.

torch is imported only where a source needs it, so ``import deadrelu.data`` stays fast.
"""

from deadrelu.data.images import IMAGE_SUFFIXES
from deadrelu.data.input_shape import parse_input_shapes
from deadrelu.data.open import SUPPORTED, open_data
from deadrelu.data.source import Batch, DataSource, InputSpec
from deadrelu.data.synthetic import DEFAULT_SYNTHETIC_SAMPLES

__all__ = ["DEFAULT_SYNTHETIC_SAMPLES", "IMAGE_SUFFIXES", "SUPPORTED", "Batch", "DataSource",
           "InputSpec", "open_data", "parse_input_shapes"]
