"""Batches per second: robustad's data pipeline against torchvision MNIST + ToTensor + DataLoader.

    python scripts/bench_data.py --data-dir /work/shared/datasets [--batches 300] [--device cuda]

Both sides deliver the same thing to the model: a shuffled float batch (B, 1, 28, 28) in [0, 1]
on the device. Ours gathers each batch from one uint8 tensor (on the GPU when there is one) and
converts it there; torchvision decodes every image through PIL and collates on the host.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import DataLoader

from robustad.data import ContaminatedDataModule
from robustad.data.sources import MNIST_LAYOUT, locate_idx


def batches_per_second(
    make_epoch: Callable[[], Iterator[torch.Tensor]], n_batches: int, warmup: int
) -> float:
    """Time `n_batches` after `warmup`, starting new epochs as needed; syncs the GPU at the ends."""

    def stream() -> Iterator[torch.Tensor]:
        while True:
            yield from make_epoch()

    batches = stream()
    for _ in range(warmup):
        next(batches)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    checksum = 0.0
    for _ in range(n_batches):
        checksum += float(next(batches)[0, 0, 0, 0])  # forces the batch to exist
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_batches / (time.perf_counter() - start)


def robustad_epochs(
    data_dir: Path, batch_size: int, device: torch.device
) -> Callable[[], Iterator[torch.Tensor]]:
    dm = ContaminatedDataModule(
        dataset="mnist", data_dir=str(data_dir), download=False, batch_size=batch_size
    )
    dm.setup("fit")
    dm.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=device)
    )  # as Lightning sets it

    def epoch() -> Iterator[torch.Tensor]:
        for batch in dm.train_dataloader():
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            yield dm.on_after_batch_transfer(batch, 0)["image"]

    return epoch


def torchvision_mnist(data_dir: Path, root: Path) -> Any:
    """torchvision's MNIST (ToTensor per image) reading uncompressed copies of the IDX files
    under `root` (offline): the baseline both benchmarks compare against."""
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor

    raw = root / "MNIST" / "raw"  # torchvision reads uncompressed files here
    raw.mkdir(parents=True)
    for path in locate_idx(MNIST_LAYOUT, data_dir, download=False).values():
        with (
            gzip.open(path) if path.suffix == ".gz" else path.open("rb") as src,
            (raw / path.name.removesuffix(".gz")).open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
    return MNIST(str(root), train=True, transform=ToTensor(), download=False)


def torchvision_epochs(
    data_dir: Path, root: Path, batch_size: int, workers: int, device: torch.device
) -> Callable[[], Iterator[torch.Tensor]]:
    dataset = torchvision_mnist(data_dir, root)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )

    def epoch() -> Iterator[torch.Tensor]:
        for images, _ in loader:
            yield images.to(device, non_blocking=True)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="holds MNIST IDX files (raw or .gz)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300, help="timed batches per pipeline")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers for torchvision's side"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (on a busy CPU use 1)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ours = batches_per_second(
        robustad_epochs(args.data_dir, args.batch_size, device), args.batches, args.warmup
    )
    with tempfile.TemporaryDirectory() as tmp:
        epochs = torchvision_epochs(args.data_dir, Path(tmp), args.batch_size, args.workers, device)
        theirs = batches_per_second(epochs, args.batches, args.warmup)
    print(
        f"device {device}, {torch.get_num_threads()} threads, batch size {args.batch_size}, "
        f"{args.batches} batches each"
    )
    print(f"robustad pipeline:                    {ours:10.1f} batches/s")
    print(f"torchvision MNIST + ToTensor ({args.workers} workers): {theirs:10.1f} batches/s")
    print(f"ratio: {ours / theirs:.1f}x")


if __name__ == "__main__":
    main()
