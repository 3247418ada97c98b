"""Data set files, read without torch: Fashion-MNIST's idx files, scikit-learn's digits and
``imagefolder:PATH`` as numpy arrays, the search paths, and the Fashion-MNIST download.

``autocompress search`` reads (and checks) the data through :func:`read_data` before it imports
torch, so that a wrong ``--data-dir`` or a broken image is refused in a second; the arrays it
read are kept for the one :func:`autocompress.data.load_dataset` that follows in the same
process (:func:`take_checked`), so nothing is read twice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocompress._io import as_if_created, check_folder, check_regular_file, ensure_writable_dir, path_kind
from autocompress.exceptions import DatasetError

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
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def cache_dir() -> Path:
    """Where downloaded data and trained supernets live (``$AUTOCOMPRESS_CACHE`` overrides)."""
    env = os.environ.get("AUTOCOMPRESS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autocompress"


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
    # the headers first (nothing decoded): one colour image makes the set RGB (grey ones are
    # replicated, not colour dropped from the rest), and the size is the median short side
    modes, sides = set(), []
    for path, _ in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    modes.add(img.mode)
                    sides.append(min(img.size))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
            pass  # said below, with the reason, when it is decoded
    mode = "L" if modes <= GREY_MODES else "RGB"
    size = image_size or (int(np.median(sides)) if sides else 0)
    for path, _ in files:
        try:
            with warnings.catch_warnings():
                # PIL only warns between MAX_IMAGE_PIXELS and twice that, then decodes it all
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img = _square(img.convert(mode)).resize((size, size), Image.Resampling.BILINEAR)
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
    # ":square": how the images were read (centre square, median size), in the data's fingerprint
    return images, labels, tuple(classes), f"imagefolder:{root.resolve()}:{len(files)}:square"


GREY_MODES = {"L", "1", "I;16", "I", "LA"}  # PIL modes of one-channel images


def _square(img: Any) -> Any:
    """The centred square of ``img`` (its short side): scaling it keeps the aspect ratio."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img if w == h else img.crop((left, top, left + side, top + side))


FASHION_SPECS = ("fashion-mnist", "fashion_mnist", "fmnist")
DEFAULT_DATASET = "fashion-mnist"  # what a --model search trains on without --dataset


@dataclass(frozen=True)
class RawData:
    """A data set's images (N, C, H, W) in [0, 1], labels and where it came from;
    ``n_train_file``: how many of them come from a separate training file (Fashion-MNIST)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    n_train_file: int | None = None


_checked: dict[tuple[str, str, int | None], RawData] = {}


def _key(spec: str, data_dir: str | Path | None, image_size: int | None) -> tuple[str, str, int | None]:
    return spec, str(Path(data_dir).expanduser().absolute()) if data_dir is not None else "", image_size


def read_data(spec: str, data_dir: str | Path | None = None, *, image_size: int | None = None,
              keep: bool = False) -> RawData:  # fmt: skip
    """Read a data set by spec (``fashion-mnist``, ``digits`` or ``imagefolder:PATH``).

    Args:
        keep: hold the result for the next :func:`take_checked` of the same spec and folder
            (the check before torch is imported, whose arrays the search then uses).

    Raises:
        DatasetError: an unknown spec, missing or unreadable files, files that disagree.
    """
    if spec in FASHION_SPECS:
        images, labels, n_train, classes, source = _load_fashion(data_dir)
        data = RawData("fashion-mnist", images, labels, tuple(classes), source, n_train)
    elif spec == "digits":
        images, labels, classes, source = _load_digits()
        data = RawData("digits", images, labels, tuple(classes), source)
    elif spec.startswith("imagefolder:"):
        where = spec.split(":", 1)[1]
        if not where.strip():
            raise DatasetError("--dataset imagefolder:PATH needs a folder, e.g. imagefolder:data/pets")
        images, labels, classes, source = _load_imagefolder(Path(where).expanduser(), image_size)
        data = RawData(spec, images, labels, tuple(classes), source)
    else:
        raise DatasetError(f"unknown data set {spec!r}; use 'fashion-mnist', 'digits' or 'imagefolder:PATH'")
    _checked.clear()
    if keep:
        _checked[_key(spec, data_dir, image_size)] = data
    return data


def take_checked(spec: str, data_dir: str | Path | None = None, image_size: int | None = None) -> RawData | None:
    """The arrays :func:`read_data` kept for this spec, folder and size (once), else None."""
    return _checked.pop(_key(spec, data_dir, image_size), None)


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
    made = [p for p in (dest, *dest.parents) if not p.exists()]  # removed again if nothing is downloaded
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {dest}: {exc.strerror or exc}") from None
    try:
        _fetch(dest, base_url, FASHION_MD5 if checksums is None else checksums, timeout)
    except BaseException:
        for folder in made:  # innermost first; only folders this call made and left empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return dest


def _fetch(dest: Path, base_url: str, checksums: dict[str, str], timeout: float) -> None:
    ensure_writable_dir(dest, "download folder")
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
            as_if_created(tmp)
            os.replace(tmp, target)
        except OSError as exc:
            why = getattr(exc, "reason", None) or exc  # urllib's URLError wraps the socket's error
            why = getattr(why, "strerror", None) or str(why)
            raise DatasetError(f"cannot download {url}: {why}; install the data with 'sudo apt-get install "
                               "dataset-fashion-mnist', or pass --data-dir DIR (a folder holding its files)") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
