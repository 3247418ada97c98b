"""Data sets: Fashion-MNIST (idx files), scikit-learn digits, and ``imagefolder:PATH``
(read by :mod:`autocompress.data_files`, without torch).

Every data set is held in memory as one float tensor in ``[0, 1]`` (N, C, H, W) with fixed,
seeded index splits: ``train`` (fine-tuning and supernet training), ``calib`` (a held-out part of
the training file, for quantization calibration and BN recalibration), ``val`` (what the search
chooses by) and ``test`` (reported, never used for a choice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autocompress.data_files import read_data, take_checked
from autocompress.exceptions import DatasetError

SPLITS = ("train", "calib", "val", "test")

CALIB_SIZE = 1024


@dataclass
class ImageDataset:
    """An in-memory image classification data set with fixed splits.

    Attributes:
        name: the data set spec as the user wrote it (``fashion-mnist``, ``digits``, ...).
        images: float32 (N, C, H, W) in ``[0, 1]``.
        labels: int64 (N,).
        splits: split name -> index tensor into ``images``.
        class_names: one name per class, in label order.
        fingerprint: identifies the exact data and split, for the supernet cache key.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    splits: dict[str, torch.Tensor]
    class_names: tuple[str, ...]
    fingerprint: str
    _resized: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str, resolution: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of one split, resized to ``resolution`` (cached per split and size)."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; splits are {SPLITS}")
        idx = self.splits[name]
        labels = self.labels[idx]
        if resolution is None or resolution == self.image_size:
            return self.images[idx], labels
        key = (name, resolution)
        if key not in self._resized:
            self._resized[key] = resize(self.images[idx], resolution)
        return self._resized[key], labels

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training split (baked into exported models)."""
        x = self.images[self.splits["train"]]
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "channels": self.channels,
            "image_size": self.image_size,
            "classes": list(self.class_names),
            "split_sizes": {k: int(v.numel()) for k, v in self.splits.items()},
            "fingerprint": self.fingerprint,
        }


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear, antialiased resize of a (N, C, H, W) batch to ``resolution`` x ``resolution``."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = []
    for chunk in images.split(4096):
        out.append(
            F.interpolate(chunk, size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0.0, 1.0)
        )  # fmt: skip
    return torch.cat(out)


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shift (zero-padded crop) and horizontal flip, on a batch."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (1,), generator=generator).item()
    dy = torch.randint(0, 2 * pad + 1, (1,), generator=generator).item()
    out = padded[:, :, dy : dy + h, dx : dx + w]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def random_resized_crop(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Random resized crop and horizontal flip, per image, on a batch (the photo augmentation of
    ImageNet training, written in torch: one affine ``grid_sample`` for the whole batch).

    Each image gets a crop covering a random share ``scale`` of its area with a random aspect
    ratio (log-uniform in ``ratio``; clipped to the image), at a random position, resized back
    to the input's size (bilinear), and is mirrored with probability 1/2. Shape, dtype and the
    ``[0, 1]`` range are kept.
    """
    n, _, h, w = images.shape
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n).uniform_(float(np.log(ratio[0])), float(np.log(ratio[1])), generator=generator)
    aspect = torch.exp(log_r)
    # crop size as a fraction of the side (1 = the whole side), never larger than the image
    fw = torch.sqrt(area * aspect).clamp(max=1.0)
    fh = torch.sqrt(area / aspect).clamp(max=1.0)
    # crop centre, in grid coordinates [-1, 1]: anywhere the crop stays inside the image
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - fw)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - fh)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = fw * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = fh
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(images.dtype), [n, images.shape[1], h, w], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)


def augment_for(images: torch.Tensor, generator: torch.Generator, kind: str = "auto") -> torch.Tensor:
    """The training augmentation ``kind`` names: ``shift`` (:func:`augment`, small grey images),
    ``crop`` (:func:`random_resized_crop`, photos) or ``auto`` (crop for 3-channel images,
    shift otherwise)."""
    if kind == "auto":
        kind = "crop" if images.shape[1] == 3 else "shift"
    if kind == "crop":
        return random_resized_crop(images, generator)
    if kind == "shift":
        return augment(images, generator)
    raise ValueError(f"unknown augmentation {kind!r}; expected auto, shift or crop")


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over the data in batches, shuffled when a generator is given."""
    n = images.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield images[idx], labels[idx]


def endless_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches forever (epoch after epoch), for step-counted training loops."""
    while True:
        yield from batches(images, labels, batch_size, generator=generator)


# --------------------------------------------------------------------------- loading


def load_dataset(
    spec: str,
    *,
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    subset: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a data set by spec: ``fashion-mnist``, ``digits`` or ``imagefolder:PATH``.

    Args:
        spec: which data set.
        data_dir: where Fashion-MNIST's idx files are (default: search the usual places).
        image_size: for ``imagefolder``, the side every image is resized to.
        subset: cap every split at this many samples (quick runs and tests).
        seed: seeds the train/val (and calib) split.
    """
    raw = take_checked(spec, data_dir, image_size) or read_data(spec, data_dir, image_size=image_size)
    images, labels, name, source = raw.images, raw.labels, raw.name, raw.source
    if raw.n_train_file is not None:  # Fashion-MNIST: the test split is its own file
        test_idx = np.arange(raw.n_train_file, len(labels))
        pool = np.arange(raw.n_train_file)
        val_fraction = 5000 / raw.n_train_file
    else:
        share = 0.2 if name == "digits" else 0.15
        order = np.random.default_rng(10_000 + seed).permutation(len(labels))
        n_test = max(1, round(share * len(labels)))
        test_idx, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
        val_fraction = share

    rng = np.random.default_rng(seed)
    pool = rng.permutation(pool)
    n_val = max(1, round(val_fraction * len(pool)))
    n_calib = min(CALIB_SIZE, max(1, len(pool) // 10))
    splits_np = {
        "val": pool[:n_val],
        "calib": pool[n_val : n_val + n_calib],
        "train": pool[n_val + n_calib :],
        "test": test_idx,
    }
    if subset is not None:
        if subset < 1:
            raise DatasetError(f"subset must be at least 1; got {subset}")
        splits_np = {k: v[:subset] for k, v in splits_np.items()}
    splits = {k: torch.from_numpy(np.sort(v).astype(np.int64)) for k, v in splits_np.items()}
    if any(v.numel() == 0 for v in splits.values()):
        raise DatasetError(f"data set {spec!r} is too small to split into {SPLITS}")

    digest = hashlib.sha256()
    digest.update(name.encode())
    digest.update(source.encode())
    digest.update(str(tuple(images.shape)).encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    for k in SPLITS:
        digest.update(splits[k].numpy().tobytes())
    return ImageDataset(
        name=name,
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        splits=splits,
        class_names=raw.classes,
        fingerprint=digest.hexdigest()[:16],
    )


