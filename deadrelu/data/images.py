"""A folder of images: decoded, resized and normalised per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.data.common import (
    Fix,
    Opts,
    counted,
    float_target,
    reshape_to,
    single_input,
)
from deadrelu.data.source import Batch, DataSource
from deadrelu.errors import DeadReluError, first_line

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})



def _image_files(root: Path) -> list[Path]:
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        # Skip hidden files and folders (macOS "._x.jpg" resource forks are not images).
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def from_images(root: Path, opts: Opts, image_size: int | tuple[int, int] | None,
                 mean: Sequence[float] | None, std: Sequence[float] | None,
                 channels: int | None) -> DataSource:
    label = str(root)
    spec = single_input(opts.inputs, "an image folder", label)
    want = opts.wants[spec.name]
    files = _image_files(root)
    if not files:
        kinds = ", ".join(sorted(s[1:] for s in IMAGE_SUFFIXES))
        raise DeadReluError(f"the folder holds no images ({kinds})", path=label)
    four = want is not None and len(want) == 4
    if channels is None:
        channels = want[1] if four and want is not None and want[1] is not None else 3
    if channels not in _MODES:
        raise DeadReluError(
            f"input {spec.name!r} wants {channels} channels but images give 1 (grayscale), "
            "3 (RGB) or 4 (RGBA)", path=label)
    size = _image_size(image_size, label)  # (width, height)
    if size is None and four and want is not None and want[2] and want[3]:
        size = (want[3], want[2])
    first_size = _open_image(files[0], _MODES[channels], None).shape
    resize = size is not None
    if size is None:
        size = (first_size[1], first_size[0])
    scale = _mean_std(mean, std, channels, label)
    got = (len(files), channels, size[1], size[0])
    sample_shape = reshape_to(spec.name, want, got, f"{root.name}/ (images as N, C, H, W)",
                               label)
    total = opts.total(len(files))
    loader = _Images(spec.name, files[:total], _MODES[channels], size, resize, scale,
                     opts.batch_size, Fix(float_target(spec), sample_shape))
    desc = counted(f"{root.name}/", total, len(files), "image")
    desc = desc[:-1] + f", {_MODES[channels]} {size[0]}x{size[1]})"
    return DataSource(desc, False, total, loader, label, total)


def _image_size(value: int | tuple[int, int] | None, label: str) -> tuple[int, int] | None:
    if value is None:
        return None
    hw = (value, value) if isinstance(value, int) else tuple(value)
    if len(hw) != 2 or not all(isinstance(d, int) and d >= 1 for d in hw):
        raise DeadReluError(f"--image-size must be one or two positive whole numbers (H W), "
                            f"got {value!r}", path=label)
    return (hw[1], hw[0])


def _mean_std(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int,
              label: str) -> tuple[np.ndarray, np.ndarray] | None:
    mean = None if mean is None or len(mean) == 0 else mean  # an unset CLI list may be []
    std = None if std is None or len(std) == 0 else std
    if mean is None and std is None:
        return None
    vectors = []
    for flag, values, default in (("--mean", mean, 0.0), ("--std", std, 1.0)):
        v = np.asarray([default] if values is None else list(values), dtype=np.float32)
        if len(v) not in (1, channels):
            raise DeadReluError(f"{flag} has {len(v)} values but the images have {channels} "
                                "channels: give one value per channel (or one for all)",
                                path=label)
        vectors.append(np.broadcast_to(v, (channels,)).reshape(channels, 1, 1))
    if np.any(vectors[1] == 0):
        raise DeadReluError("--std must not be 0", path=label)
    return vectors[0], vectors[1]


def _open_image(file: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image as float32 in [0, 1], (H, W) or (H, W, C)."""
    from PIL import Image

    try:
        with Image.open(file) as opened:
            if opened.mode in _WIDE_GRAY:
                return _wide_gray(opened, file, mode, size)
            im = opened.convert(mode)
            if size is not None and im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.float32) / np.float32(255)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DeadReluError(f"cannot read this image ({first_line(exc)})",
                            path=file) from None


# 16-bit grayscale (PNG, TIFF) opens as one of these. Pillow's convert("L") clips them to
# 0..255, which turns nearly every pixel white: they are scaled by 65535 instead.
_WIDE_GRAY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def _wide_gray(opened: Any, file: Path, mode: str, size: tuple[int, int] | None
               ) -> np.ndarray:
    from PIL import Image

    a = np.asarray(opened, dtype=np.float32)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise DeadReluError(f"a {opened.mode} image with values outside 0..65535: deadrelu "
                            "reads 8- and 16-bit images", path=file)
    im = Image.fromarray(a / np.float32(65535), mode="F")
    if size is not None and im.size != size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    gray = np.asarray(im, dtype=np.float32)
    if mode == "L":
        return gray
    planes = [gray] * 3 + ([np.ones_like(gray)] if mode == "RGBA" else [])
    return np.stack(planes, axis=-1)


class _Images:
    """Image files decoded batch by batch into (N, C, H, W) float arrays."""

    def __init__(self, name: str, files: list[Path], mode: str, size: tuple[int, int],
                 resize: bool, scale: tuple[np.ndarray, np.ndarray] | None, batch_size: int,
                 fix: Fix) -> None:
        self.name, self.files, self.mode, self.size = name, files, mode, size
        self.resize = resize
        self.scale, self.batch_size, self.fix = scale, batch_size, fix

    def __call__(self) -> Iterator[Batch]:
        for start in range(0, len(self.files), self.batch_size):
            images = [self._load(f) for f in self.files[start:start + self.batch_size]]
            x = np.stack(images)
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            if self.scale is not None:
                x = (x - self.scale[0]) / self.scale[1]
            yield {self.name: self.fix(x)}

    def _load(self, file: Path) -> np.ndarray:
        a = _open_image(file, self.mode, self.size if self.resize else None)
        if a.shape[:2] != (self.size[1], self.size[0]):
            raise DeadReluError(
                f"image is {a.shape[1]}x{a.shape[0]} but {self.files[0].name} is "
                f"{self.size[0]}x{self.size[1]}: pass --image-size to resize them all",
                path=file)
        return a
