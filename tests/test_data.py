import functools
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.data import load_dataset
from autocompress.data_files import FASHION_FILES, download_fashion_mnist, read_data, read_idx
from autocompress.exceptions import DatasetError


def test_fashion_mnist_splits_are_fixed_disjoint_and_complete(fashion_dir: Path) -> None:
    a = load_dataset("fashion-mnist", data_dir=fashion_dir, seed=0)
    b = load_dataset("fashion-mnist", data_dir=fashion_dir, seed=0)
    c = load_dataset("fashion-mnist", data_dir=fashion_dir, seed=1)
    assert a.images.shape == (70_000, 1, 28, 28) and a.num_classes == 10
    assert float(a.images.min()) >= 0.0 and float(a.images.max()) <= 1.0
    sizes = {k: v.numel() for k, v in a.splits.items()}
    assert sizes["test"] == 10_000 and sizes["val"] == 5_000 and sum(sizes.values()) == 70_000
    # the official test file is the test split, whatever the seed
    assert torch.equal(a.splits["test"], torch.arange(60_000, 70_000))
    assert torch.equal(a.splits["test"], c.splits["test"])
    union = torch.cat(list(a.splits.values()))
    assert union.unique().numel() == union.numel()  # disjoint
    for k in a.splits:
        assert torch.equal(a.splits[k], b.splits[k])  # same seed, same split
    assert not torch.equal(a.splits["val"], c.splits["val"])
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_subset_caps_every_split(fashion_dir: Path) -> None:
    d = load_dataset("fashion-mnist", data_dir=fashion_dir, subset=300)
    assert all(v.numel() <= 300 for v in d.splits.values())
    x, y = d.split("val", resolution=16)
    assert x.shape == (300, 1, 16, 16) and y.shape == (300,)


def test_digits_from_scikit_learn() -> None:
    d = load_dataset("digits")
    assert d.images.shape[1:] == (1, 8, 8) and d.num_classes == 10
    assert sum(v.numel() for v in d.splits.values()) == 1797


def test_imagefolder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(12):
            arr = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert d.class_names == ("cat", "dog")
    assert d.images.shape == (24, 3, 16, 16)
    assert sorted(torch.bincount(d.labels).tolist()) == [12, 12]


def test_imagefolder_keeps_colour_and_aspect_whatever_the_first_file(tmp_path: Path) -> None:
    """The first file read once set the colour mode and the size of every image: one grey image
    first made a red-vs-green set grey, and wide images were squashed to the first one's width."""
    from PIL import Image

    for cls, colour in (("red", (255, 0, 0)), ("green", (0, 255, 0))):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((30, 30), 128, np.uint8)).save(tmp_path / cls / "00.png")  # grey, sorted first
        for i in range(1, 4):
            wide = np.zeros((20, 40, 3), np.uint8)
            wide[:, 10:30] = colour  # the coloured square in the middle of a 2:1 image
            Image.fromarray(wide).save(tmp_path / cls / f"{i:02d}.png")
    d = load_dataset(f"imagefolder:{tmp_path}")
    assert d.images.shape[1] == 3  # colour kept: the grey images are replicated to RGB
    assert d.images.shape[2:] == (20, 20)  # the median short side, each image's centre square
    green, red = d.images[d.labels == 0], d.images[d.labels == 1]
    assert float(red[1:, 0].mean()) > 0.99 and float(red[1:, 1].mean()) < 0.01  # the centre: pure red
    assert float(green[1:, 1].mean()) > 0.99 and float(green[1:, 0].mean()) < 0.01


def test_the_data_checked_before_torch_is_the_data_the_search_loads(tmp_path: Path) -> None:
    """`autocompress search` reads the data once, before importing torch (read_data keep=True);
    the load that follows takes those arrays instead of reading the folder again, once."""
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8), 40 * i + (cls == "dog"), np.uint8)).save(tmp_path / cls / f"{i}.png")
    spec = f"imagefolder:{tmp_path}"
    checked = read_data(spec, keep=True)
    shutil.rmtree(tmp_path / "dog")  # from here on, a read of the folder would fail
    d = load_dataset(spec)
    assert d.images.shape == (8, 1, 8, 8) and d.class_names == ("cat", "dog")
    assert np.array_equal(d.images.numpy(), checked.images)
    with pytest.raises(DatasetError, match="needs one sub-folder per class"):
        load_dataset(spec)  # kept for one load only


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="unknown data set 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_truncated_idx_file_is_a_clear_error(tmp_path: Path, fashion_dir: Path) -> None:
    src = next(fashion_dir.glob("t10k-labels*"))
    raw = gzip.open(src).read() if src.suffix == ".gz" else src.read_bytes()
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(raw[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(bad)


def test_a_download_that_cannot_connect_says_why_and_leaves_no_folder(tmp_path: Path) -> None:
    """Offline: one line with the reason (not urllib's repr), the other ways to get the data (not
    the command that just failed), and none of the folders it would have made."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetError) as err:
        download_fashion_mnist(tmp_path / "dl" / "a" / "b", base_url=f"http://127.0.0.1:{port}/")
    msg = str(err.value)
    assert "Connection refused" in msg and "<urlopen error" not in msg and "data download" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and not (tmp_path / "dl").exists()


def test_download_from_a_mirror_checks_md5_and_loads(tmp_path: Path, fashion_dir: Path) -> None:
    """The real download code, against a mirror served on loopback from the installed files."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    sums = {}
    for stem in FASHION_FILES.values():
        src = fashion_dir / f"{stem}.gz"
        shutil.copy(src, mirror / src.name)
        sums[src.name] = hashlib.md5(src.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        dest = download_fashion_mnist(tmp_path / "dl", base_url=url, checksums=sums)
        assert load_dataset("fashion-mnist", data_dir=dest, subset=10).num_classes == 10
        bad = {**sums, "t10k-labels-idx1-ubyte.gz": "0" * 32}
        with pytest.raises(DatasetError, match="corrupt"):
            download_fashion_mnist(tmp_path / "dl2", base_url=url, checksums=bad)
        assert not (tmp_path / "dl2" / "t10k-labels-idx1-ubyte.gz").exists()
        assert not list((tmp_path / "dl2").glob("*.part"))
    finally:
        server.shutdown()
