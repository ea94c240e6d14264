"""The batch pipeline: whole-batch index gathering, epoch coverage, device placement."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_datamodule

from robustad.data import ContaminatedDataModule
from robustad.data.datamodule import IndexBatches


def make_dm(data_dir: Path, **overrides) -> ContaminatedDataModule:
    return make_datamodule(data_dir, **{**dict(contamination=0.25, batch_size=7), **overrides})


def test_index_batches_cover_each_index_once_per_epoch() -> None:
    sampler = IndexBatches(23, 5, shuffle=True, device=torch.device("cpu"))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5 and [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(batches).tolist()) == list(range(23))
    ordered = torch.cat(list(IndexBatches(23, 5, shuffle=False, device=torch.device("cpu"))))
    assert ordered.tolist() == list(range(23))


def test_batch_order_follows_the_training_seed() -> None:
    sampler = IndexBatches(50, 50, shuffle=True, device=torch.device("cpu"))
    torch.manual_seed(0)
    a = next(iter(sampler))
    torch.manual_seed(0)
    assert torch.equal(a, next(iter(sampler)))
    assert not torch.equal(a, next(iter(sampler)))


def test_an_epoch_yields_the_whole_split_as_uint8_batches(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == -(-dm.split_sizes["train"]["n"] // 7)
    images = torch.cat([b["image"] for b in batches])
    assert images.dtype == torch.uint8 and len(images) == dm.split_sizes["train"]["n"]
    assert (
        int(torch.cat([b["target"] for b in batches]).sum()) == dm.split_sizes["train"]["outliers"]
    )
    gathered = {img.numpy().tobytes() for img in images}
    assert gathered == {img.numpy().tobytes() for img in dm.splits["train"].images}
    evaluation = next(iter(dm.test_dataloader()))
    assert torch.equal(evaluation["image"], dm.splits["test"].images)  # in order, one batch
    converted = dm.on_after_batch_transfer(evaluation, 0)["image"]
    assert (
        converted.shape == (dm.split_sizes["test"]["n"], 1, 28, 28)
        and converted.dtype == torch.float32
    )
    assert torch.allclose(converted[:, 0] * 255.0, dm.splits["test"].images.float())


def test_cpu_training_keeps_the_splits_in_place(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    loader = dm.train_dataloader()
    assert loader.dataset is dm.splits["train"] and not loader.pin_memory


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_training_moves_each_split_once(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir, num_workers=2, protocol="transductive")
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    first, second = dm.train_dataloader(), dm.test_dataloader()
    assert first.dataset is second.dataset  # transductive: one set, moved once
    assert first.num_workers == 0  # workers cannot index GPU tensors
    batch = next(iter(first))
    assert all(t.device.type == "cuda" for t in batch.values())
    assert dm.on_after_batch_transfer(batch, 0)["image"].device.type == "cuda"
