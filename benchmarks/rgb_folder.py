"""Write Fashion-MNIST as an RGB image folder: a stand-in for a user's photos (it is NOT photos).

    python benchmarks/rgb_folder.py [--out data/fashion_mnist_rgb] [--size 96] [--per-class 1000]

Reads the Fashion-MNIST idx files the project already uses (Debian's ``dataset-fashion-mnist``
in /usr/share/datasets/fashion-mnist, or wherever ``autocompress data check`` finds them), takes
the first ``--per-class`` images of every class from the train file and the test file, upscales
them to ``--size`` px (bilinear, antialiased) and colourises them: each image gets a random
foreground colour and a random background colour (seeded, per image), so the three channels
differ and colour carries no label information. Writes ``OUT/<class>/<split>-<index>.png`` in
the ``imagefolder:`` layout ``autocompress`` reads (one folder per class). Each class folder is
written under a temporary name and renamed when complete, so an interrupted run never leaves a
class that looks finished.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from rich.progress import Progress  # noqa: E402

from autocompress.data import load_dataset, resize  # noqa: E402
from autocompress.data_files import FASHION_CLASSES  # noqa: E402
from autocompress.exceptions import DatasetError  # noqa: E402


def colourise(grey: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(N, 1, H, W) grey in [0, 1] -> (N, 3, H, W): background colour where the image is dark,
    foreground colour where it is bright (a per-image random pair of colours)."""
    n = grey.shape[0]
    fg = torch.from_numpy(rng.uniform(0.35, 1.0, (n, 3, 1, 1)).astype(np.float32))
    bg = torch.from_numpy(rng.uniform(0.0, 0.35, (n, 3, 1, 1)).astype(np.float32))
    return (bg + (fg - bg) * grey).clamp(0.0, 1.0)


def class_folder_name(name: str) -> str:
    return name.replace("/", "-").replace(" ", "_")


def write_folder(out: Path, size: int, per_class: int, seed: int = 0, data_dir: str | None = None) -> dict:
    data = load_dataset("fashion-mnist", data_dir=data_dir)
    n_train_file = 60_000  # the idx train file comes first in load_dataset's arrays
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    start = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task("writing PNGs", total=len(FASHION_CLASSES))
        for label, cls in enumerate(FASHION_CLASSES):
            final = out / class_folder_name(cls)
            tmp = out / f".{final.name}.part"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            idx_all = torch.nonzero(data.labels == label).flatten()
            for split, idx in (("train", idx_all[idx_all < n_train_file]), ("test", idx_all[idx_all >= n_train_file])):
                idx = idx[:per_class]
                images = colourise(resize(data.images[idx], size), rng)
                arrays = (images.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
                for i, arr in zip(idx.tolist(), arrays):
                    Image.fromarray(arr, "RGB").save(tmp / f"{split}-{i:05d}.png")
                    written += 1
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            progress.advance(task)
    return {"images": written, "size": size, "classes": len(FASHION_CLASSES), "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "fashion_mnist_rgb")
    ap.add_argument("--size", type=int, default=96, help="side of the written PNGs, px (64-224)")
    ap.add_argument("--per-class", type=int, default=1000, help="images per class from each idx file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST idx files")
    args = ap.parse_args()
    if not 16 <= args.size <= 512 or args.per_class < 1:
        print("error: --size must be within 16..512 and --per-class at least 1", file=sys.stderr)
        sys.exit(2)
    try:
        info = write_folder(args.out, args.size, args.per_class, args.seed, args.data_dir)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {info['images']} RGB PNGs ({info['size']} px, {info['classes']} classes; Fashion-MNIST "
          f"colourised, a stand-in for photos) to {args.out} in {info['seconds']} s")


if __name__ == "__main__":
    main()
