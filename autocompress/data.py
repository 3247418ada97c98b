"""Data sets: Fashion-MNIST (idx files), scikit-learn digits, and ``imagefolder:PATH``.

Every data set is held in memory as one float tensor in ``[0, 1]`` (N, C, H, W) with fixed,
seeded index splits: ``train`` (fine-tuning and supernet training), ``calib`` (a held-out part of
the training file, for quantization calibration and BN recalibration), ``val`` (what the search
chooses by) and ``test`` (reported, never used for a choice).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autocompress._io import check_folder, check_regular_file, ensure_writable_dir, path_kind
from autocompress.exceptions import DatasetError

SPLITS = ("train", "calib", "val", "test")

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# md5 of the upstream .gz files (github.com/zalandoresearch/fashion-mnist, README).
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_HINT = (
    "install it with 'sudo apt-get install dataset-fashion-mnist', "
    "or download it with 'autocompress data download', or pass --data-dir DIR"
)
CALIB_SIZE = 1024
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def cache_dir() -> Path:
    """Where downloaded data and trained supernets live (``$AUTOCOMPRESS_CACHE`` overrides)."""
    env = os.environ.get("AUTOCOMPRESS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autocompress"


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
    if spec in ("fashion-mnist", "fashion_mnist", "fmnist"):
        images, labels, n_train_file, classes, source = _load_fashion(data_dir)
        name = "fashion-mnist"
        test_idx = np.arange(n_train_file, len(labels))
        pool = np.arange(n_train_file)
        val_fraction = 5000 / n_train_file
    elif spec == "digits":
        images, labels, classes, source = _load_digits()
        name = "digits"
        order = np.random.default_rng(10_000 + seed).permutation(len(labels))
        n_test = round(0.2 * len(labels))
        test_idx, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
        val_fraction = 0.2
    elif spec.startswith("imagefolder:"):
        where = spec.split(":", 1)[1]
        if not where.strip():
            raise DatasetError("--dataset imagefolder:PATH needs a folder, e.g. imagefolder:data/pets")
        root = Path(where).expanduser()
        images, labels, classes, source = _load_imagefolder(root, image_size)
        name = spec
        order = np.random.default_rng(10_000 + seed).permutation(len(labels))
        n_test = max(1, round(0.15 * len(labels)))
        test_idx, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
        val_fraction = 0.15
    else:
        raise DatasetError(
            f"unknown data set {spec!r}; use 'fashion-mnist', 'digits' or 'imagefolder:PATH'"
        )

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
        class_names=tuple(classes),
        fingerprint=digest.hexdigest()[:16],
    )


def fashion_mnist_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for Fashion-MNIST, in order."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = []
    if os.environ.get("AUTOCOMPRESS_DATA"):
        dirs.append(Path(os.environ["AUTOCOMPRESS_DATA"]) / "fashion-mnist")
    dirs += [DEBIAN_FASHION_DIR, cache_dir() / "fashion-mnist"]
    return dirs


def find_fashion_mnist(data_dir: str | Path | None = None) -> Path | None:
    """The first folder that holds all four Fashion-MNIST files (plain or gzip), or None.

    Raises:
        DatasetError: ``data_dir`` names something that is not a folder (a file, a FIFO), or one
            of the files there is not a regular file.
    """
    if data_dir is not None and path_kind(Path(data_dir).expanduser()) is not None:
        check_folder(Path(data_dir).expanduser(), "--data-dir", DatasetError)  # a missing one: "not found"
    for folder in fashion_mnist_dirs(data_dir):
        if all(_idx_path(folder, stem) is not None for stem in FASHION_FILES.values()):
            return folder
    return None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        kind = path_kind(candidate)
        if kind == "a file":
            return candidate
        if kind is not None and kind != "a folder":  # never open a FIFO or a device
            check_regular_file(candidate, "Fashion-MNIST file", DatasetError)
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (optionally gzip'ed) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated: its header declares {ndim} dimensions, found {len(raw)} bytes")  # fmt: skip
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims)


def _load_fashion(data_dir: str | Path | None):
    folder = find_fashion_mnist(data_dir)
    if folder is None:
        searched = ", ".join(str(d) for d in fashion_mnist_dirs(data_dir))
        raise DatasetError(f"Fashion-MNIST not found (looked in {searched}); {FASHION_HINT}")
    paths = {key: _idx_path(folder, stem) for key, stem in FASHION_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}  # type: ignore[arg-type]
    _check_fashion_arrays(arrays, {k: p.name for k, p in paths.items()}, folder)  # type: ignore[union-attr]
    train_x, test_x = arrays["train_images"], arrays["test_images"]
    train_y, test_y = arrays["train_labels"], arrays["test_labels"]
    images = np.concatenate([train_x, test_x]).astype(np.float32)[:, None] / 255.0
    labels = np.concatenate([train_y, test_y]).astype(np.int64)
    return images, labels, train_x.shape[0], FASHION_CLASSES, f"idx:{folder}"


def _check_fashion_arrays(arrays: dict[str, np.ndarray], names: dict[str, str], folder: Path) -> None:
    """The four idx files agree: images (N, H, W), square, one size for both files; labels (N,)
    with as many entries as their images, each a class index below 10."""
    where = f"Fashion-MNIST in {folder}"
    for key in ("train_images", "test_images"):
        a = arrays[key]
        if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[1] < 1:
            raise DatasetError(f"{where}: {names[key]} holds arrays of shape {a.shape}, not square images "
                               "(N, H, W); is it a labels file?")  # fmt: skip
    for key in ("train_labels", "test_labels"):
        a = arrays[key]
        if a.ndim != 1:
            raise DatasetError(f"{where}: {names[key]} holds arrays of shape {a.shape}, not labels (N,); "
                               "is it an images file?")  # fmt: skip
        if a.size and int(a.max()) >= len(FASHION_CLASSES):
            raise DatasetError(f"{where}: {names[key]} holds label {int(a.max())}; labels must be "
                               f"0..{len(FASHION_CLASSES) - 1}")  # fmt: skip
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.shape[0] != y.shape[0]:
            raise DatasetError(f"{where}: {names[f'{split}_images']} holds {x.shape[0]} images but "
                               f"{names[f'{split}_labels']} {y.shape[0]} labels")  # fmt: skip
    train, test = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train != test:
        raise DatasetError(f"{where}: {names['train_images']} holds {train[0]}x{train[1]} images but "
                           f"{names['test_images']} {test[0]}x{test[1]}; both must be one size")  # fmt: skip


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]
    return images, bunch.target.astype(np.int64), tuple(str(c) for c in range(10)), "sklearn"


def _load_imagefolder(root: Path, image_size: int | None):
    """Every image under ``root/<class>/``; an image that cannot be read (a truncated or foreign
    file, a decompression bomb, a FIFO) stops the load with its name: a data set silently
    missing files would be measured on something else than the user thinks."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise DatasetError(f"imagefolder {root} is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"imagefolder {root} needs one sub-folder per class (at least 2)")
    files: list[tuple[Path, int]] = []
    empty = []
    for label, cls in enumerate(classes):
        found = sorted(p for p in (root / cls).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                       and path_kind(p) != "a folder")  # fmt: skip
        files += [(p, label) for p in found]
        if not found:
            empty.append(cls)
    if not files:
        raise DatasetError(f"imagefolder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if empty:
        raise DatasetError(f"imagefolder {root}: class folder(s) {', '.join(empty)} hold no images; every "
                           "class needs at least one")  # fmt: skip
    for path, _ in files:  # before opening any: a FIFO would block, a device never end
        check_regular_file(path, f"imagefolder {root}: image", DatasetError)
    arrays = []
    mode, size = "L", image_size or 0
    for i, (path, _) in enumerate(files):
        try:
            with warnings.catch_warnings():
                # PIL only warns between MAX_IMAGE_PIXELS and twice that, then decodes it all
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    if i == 0:
                        mode = "L" if img.mode in ("L", "1", "I;16", "I") else "RGB"
                        size = image_size or img.size[0]
                    img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                    arr = np.asarray(img, dtype=np.float32) / 255.0
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size_txt = str(exc).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
            raise DatasetError(f"imagefolder {root}: image {path} is too large to decode ({size_txt}; "
                               "a decompression bomb?); remove or shrink it") from None  # fmt: skip
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            why = " ".join(str(exc).replace(f"'{path}'", "").replace(str(path), "").split()).strip(" :")
            raise DatasetError(f"imagefolder {root}: cannot read image {path}: {why or type(exc).__name__}") from None
        arrays.append(arr[None] if mode == "L" else arr.transpose(2, 0, 1))
    images = np.stack(arrays).astype(np.float32)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return images, labels, tuple(classes), f"imagefolder:{root.resolve()}:{len(files)}"


# --------------------------------------------------------------------------- download


def download_fashion_mnist(
    dest: str | Path | None = None,
    *,
    base_url: str = FASHION_URL,
    checksums: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download Fashion-MNIST's four files into ``dest`` (default: the cache), checking md5.

    Each file is written to a temporary name and renamed only once its checksum matches, so an
    interrupted download never leaves a file that looks complete.
    """
    scheme = base_url.split(":", 1)[0].lower() if ":" in base_url else ""
    if scheme not in ("http", "https", "file"):
        raise DatasetError(f"--url must be an http://, https:// or file:// address; got {base_url!r}")
    dest = Path(dest) if dest is not None else cache_dir() / "fashion-mnist"
    if path_kind(dest) is not None:
        check_folder(dest, "--dest", DatasetError)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {dest}: {exc.strerror or exc}") from None
    ensure_writable_dir(dest, "download folder")
    checksums = FASHION_MD5 if checksums is None else checksums
    for stem in FASHION_FILES.values():
        name = f"{stem}.gz"
        target = dest / name
        if target.is_file() and _md5(target) == checksums.get(name, _md5(target)):
            continue
        url = base_url.rstrip("/") + "/" + name
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out)
            expected = checksums.get(name)
            if expected is not None and _md5(Path(tmp)) != expected:
                raise DatasetError(f"download of {url} is corrupt (md5 mismatch)")
            os.replace(tmp, target)
        except OSError as exc:
            raise DatasetError(f"cannot download {url}: {exc}; {FASHION_HINT}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dest


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
