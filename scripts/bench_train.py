"""Training samples/s: robustad's RSRAE through its own stack against a notebook Lightning loop.

    python scripts/bench_train.py --data-dir /work/shared/datasets [--batch-sizes 64 256]
        [--repeats 3] [--threads 1 2] [--device cpu|cuda] [--json out.json]

ours:     `configs/train.yaml` composed as `train()` composes it (model=rsrae: MLP 784-392-196,
          D=128, d=16; data=mnist, inlier class 4, 6 % contamination; default callbacks, the
          TensorBoard logger, trainer=cpu|gpu), built by `robustad.train.build_run`, `fit`.
notebook: the same network as a plain nn.Module in a minimal LightningModule with the same loss,
          optimiser, schedule and clipping; torchvision `MNIST` + `ToTensor` through a shuffled
          `DataLoader`; `Trainer(max_steps=...)` with Lightning's default logger and checkpoints.

Every (side, batch size, thread count, repeat) runs in a fresh process, so each reports its own
peak memory; the two sides alternate (and swap order every repeat) so both see the same load
on a shared machine. Steady state: intervals between consecutive training-batch starts inside
an epoch, after the warm-up (our first epoch; the notebook's first `--warmup` steps). What an
epoch end costs us is measured separately as a percentage of the epoch's training time: the
validation loop (AUROC/AP, the threshold and TensorBoard callbacks), and the whole epoch end
(the validation loop plus checkpoint writing and epoch logging). `--device cuda` measures batch
sizes 64, 1024 and 8192 on all ten MNIST classes (nine inlier classes, so a batch of 8192 fits
an epoch several times) and samples GPU utilisation with nvidia-smi.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from bench_data import torchvision_mnist  # same baseline data as the data benchmark
from torch import nn

SIDES = ("ours", "notebook")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "robustad" / "configs"
CUDA_BATCH_SIZES = (64, 1024, 8192)


# --- timing ---------------------------------------------------------------------------------
class Clock(pl.Callback):
    """Timestamps of epoch starts and training-batch starts/ends, and of the end of fit."""

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.epochs: list[dict[str, Any]] = []
        self.fit_end = 0.0

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(
            {"start": self._now(), "steps": [], "last_end": 0.0, "sizes": [], "val": 0.0}
        )

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = self._now()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.epochs:  # not the sanity check
            self.epochs[-1]["val"] = self._now() - self._val_start

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.epochs[-1]["steps"].append(self._now())
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        self.epochs[-1]["sizes"].append(len(images))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.epochs[-1]["last_end"] = self._now()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_end = self._now()  # added last: runs after the thresholds' fit-end work

    def throughput(self, skip_epochs: int, skip_steps: int) -> tuple[float, int]:
        """Samples/s over batch-start to batch-start intervals inside epochs, after warm-up."""
        samples, seconds, seen = 0, 0.0, 0
        for epoch in self.epochs[skip_epochs:]:
            steps, sizes = epoch["steps"], epoch["sizes"]
            for i in range(len(steps) - 1):
                seen += 1
                if seen > skip_steps:
                    samples += sizes[i]
                    seconds += steps[i + 1] - steps[i]
        return samples / seconds, seen - skip_steps

    def epoch_overhead(self) -> dict[str, float]:
        """Epoch-end time over the epoch's training time, for whole epochs after the first and
        before the last (the last one also draws the TensorBoard figures: reported apart)."""
        pairs = list(zip(self.epochs[1:-2], self.epochs[2:-1], strict=True))
        ends = [
            (nxt["start"] - cur["last_end"]) / (cur["last_end"] - cur["start"])
            for cur, nxt in pairs
        ]
        vals = [cur["val"] / (cur["last_end"] - cur["start"]) for cur, _ in pairs]
        last = self.epochs[-1]
        return {
            "epoch_end_pct": 100 * statistics.median(ends),
            "val_loop_pct": 100 * statistics.median(vals),
            "epoch_train_s": statistics.median(
                e["last_end"] - e["start"] for e in self.epochs[1:-1]
            ),
            "last_epoch_end_s": self.fit_end - last["last_end"],
        }


class GPUUtilisation:
    """Mean GPU utilisation (%) from nvidia-smi, sampled every 100 ms in a background process."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.proc: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> GPUUtilisation:
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    *("-lms", "100", "-i", str(torch.cuda.current_device())),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


# --- ours -----------------------------------------------------------------------------------
def run_ours(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from robustad.train import build_run

    cuda = args.device == "cuda"
    overrides = [
        f"data.data_dir={args.data_dir}",
        "data.download=false",
        f"data.batch_size={args.batch_size}",
        f"trainer={'gpu' if cuda else 'cpu'}",
        f"cpu_threads={args.threads}",
        *(["data.inlier_classes=[0,1,2,3,4,5,6,7,8]"] if cuda else []),
        *args.override,
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    torch.set_num_threads(cfg.cpu_threads)  # as train() does
    pl.seed_everything(cfg.seed)
    clock = Clock(sync=cuda)
    datamodule, model, trainer = build_run(cfg, [clock])
    steps_per_epoch = -(-datamodule.split_sizes["train"]["n"] // args.batch_size)
    # The first epoch warms up; then enough epochs for `steps` intervals, at least 3 (overhead).
    epochs = 1 + max(3, -(-args.steps // max(1, steps_per_epoch - 1)))
    trainer.fit_loop.max_epochs = epochs
    with GPUUtilisation() if cuda else _Null() as gpu:
        trainer.fit(model, datamodule=datamodule)
    samples_per_s, timed = clock.throughput(skip_epochs=1, skip_steps=0)
    return {
        "samples_per_s": samples_per_s,
        "timed_steps": timed,
        "epochs": epochs,
        "train_samples": datamodule.split_sizes["train"]["n"],
        **clock.epoch_overhead(),
        **({"gpu_util_pct": gpu.mean()} if cuda else {}),
    }


# --- the notebook loop ----------------------------------------------------------------------
class NotebookRSRAE(nn.Module):
    """The RSRAE MLP written out as a notebook would: encoder, A, renormalise, decoder."""

    def __init__(self, D: int = 128, d: int = 16) -> None:
        super().__init__()
        act = nn.LeakyReLU
        self.encoder = nn.Sequential(
            nn.Linear(784, 392), act(), nn.Linear(392, 196), act(), nn.Linear(196, D)
        )
        self.A = nn.Parameter(nn.init.orthogonal_(torch.empty(d, D)))
        self.decoder = nn.Sequential(
            nn.Linear(d, 196), act(), nn.Linear(196, 392), act(), nn.Linear(392, 784), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x.flatten(1))
        code = nn.functional.normalize(z @ self.A.T, dim=1)
        return self.decoder(code).view_as(x), z


class NotebookModule(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, lambda1: float = 0.1, lambda2: float = 0.1) -> None:
        super().__init__()
        self.net, self.lr, self.lambda1, self.lambda2 = NotebookRSRAE(), lr, lambda1, lambda2

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        x, _ = batch
        x_hat, z = self.net(x)
        A = self.net.A
        reconstruction = (x - x_hat).flatten(1).norm(dim=1).mean()
        projection = (z - z @ A.T @ A).norm(dim=1).mean()
        orthogonality = (A @ A.T - torch.eye(A.shape[0], device=A.device)).pow(2).sum()
        loss = reconstruction + self.lambda1 * projection + self.lambda2 * orthogonality
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def run_notebook(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    torch.set_num_threads(args.threads)
    pl.seed_everything(0)
    cuda = args.device == "cuda"
    loader = DataLoader(
        torchvision_mnist(args.data_dir, out / "data"),
        batch_size=args.batch_size,
        shuffle=True,
        pin_memory=cuda,
    )
    clock = Clock(sync=cuda)
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        max_steps=args.warmup + args.steps + 1,
        gradient_clip_val=1.0,
        default_root_dir=str(out),
        callbacks=[clock],
    )
    with GPUUtilisation() if cuda else _Null() as gpu:
        trainer.fit(NotebookModule(), loader)
    samples_per_s, timed = clock.throughput(skip_epochs=0, skip_steps=args.warmup)
    return {
        "samples_per_s": samples_per_s,
        "timed_steps": timed,
        "train_samples": len(loader.dataset),
        **({"gpu_util_pct": gpu.mean()} if cuda else {}),
    }


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    with tempfile.TemporaryDirectory() as tmp:
        run = run_ours if args.worker == "ours" else run_notebook
        result = run(args, Path(tmp))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result))


# --- driver ---------------------------------------------------------------------------------
def measure(args: argparse.Namespace, side: str, batch_size: int, threads: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", side, "--batch-size", str(batch_size)]
    command += ["--threads", str(threads), "--data-dir", str(args.data_dir)]
    command += ["--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += [f"--override={o}" for o in args.override]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{side} batch {batch_size} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="MNIST IDX files")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=50, help="notebook steps before timing")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--override", action="append", default=[], help="extra override (ours)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        worker(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here; nothing measured.")
        return
    batch_sizes = args.batch_sizes or ([*CUDA_BATCH_SIZES] if args.device == "cuda" else [64, 256])
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for threads in args.threads:
            for batch_size in batch_sizes:
                sides = SIDES if repeat % 2 == 0 else SIDES[::-1]
                for side in sides:
                    result = measure(args, side, batch_size, threads)
                    result.update(side=side, batch_size=batch_size, threads=threads, repeat=repeat)
                    rows.append(result)
                    print(
                        f"  repeat {repeat} {side:8s} batch {batch_size:5d} threads {threads}: "
                        f"{result['samples_per_s']:9.0f} samples/s, load {os.getloadavg()[0]:.2f}",
                        file=sys.stderr,
                    )
    load_after = os.getloadavg()
    summary = []
    for threads in args.threads:
        for batch_size in batch_sizes:
            pick = {
                side: [
                    r
                    for r in rows
                    if r["side"] == side
                    and r["batch_size"] == batch_size
                    and r["threads"] == threads
                ]
                for side in SIDES
            }
            ours, notebook = (median(pick[s], "samples_per_s") for s in SIDES)
            summary.append(
                {
                    "batch_size": batch_size,
                    "threads": threads,
                    "ours_samples_per_s": ours,
                    "notebook_samples_per_s": notebook,
                    "ratio": ours / notebook,
                    "ours_peak_rss_mb": median(pick["ours"], "peak_rss_mb"),
                    "notebook_peak_rss_mb": median(pick["notebook"], "peak_rss_mb"),
                    "ours_cuda_max_allocated_mb": median(pick["ours"], "cuda_max_allocated_mb"),
                    "notebook_cuda_max_allocated_mb": median(
                        pick["notebook"], "cuda_max_allocated_mb"
                    ),
                    "ours_gpu_util_pct": median(pick["ours"], "gpu_util_pct"),
                    "notebook_gpu_util_pct": median(pick["notebook"], "gpu_util_pct"),
                    "epoch_end_pct": median(pick["ours"], "epoch_end_pct"),
                    "val_loop_pct": median(pick["ours"], "val_loop_pct"),
                    "last_epoch_end_s": median(pick["ours"], "last_epoch_end_s"),
                }
            )
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"device {device}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"Lightning {pl.__version__}; {args.repeats} interleaved repeats, medians; "
        f"load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}"
    )
    gpu = args.device == "cuda"
    header = "| batch | threads | ours samples/s | notebook samples/s | ratio |"
    header += " peak RSS ours / nb (MB) |"
    header += " CUDA max alloc ours / nb (MB) | GPU util ours / nb (%) |" if gpu else ""
    header += " validation loop (% of epoch) | whole epoch end (% of epoch) |"
    header += " last epoch end + fit end (s) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for s in summary:
        line = (
            f"| {s['batch_size']} | {s['threads']} | {s['ours_samples_per_s']:.0f} | "
            f"{s['notebook_samples_per_s']:.0f} | {s['ratio']:.2f}x | "
            f"{s['ours_peak_rss_mb']:.0f} / {s['notebook_peak_rss_mb']:.0f} |"
        )
        if gpu:
            line += (
                f" {fmt(s['ours_cuda_max_allocated_mb'], '.0f')} / "
                f"{fmt(s['notebook_cuda_max_allocated_mb'], '.0f')} |"
                f" {fmt(s['ours_gpu_util_pct'], '.0f')} / "
                f"{fmt(s['notebook_gpu_util_pct'], '.0f')} |"
            )
        line += f" {fmt(s['val_loop_pct'], '.1f')} | {fmt(s['epoch_end_pct'], '.1f')} |"
        line += f" {fmt(s['last_epoch_end_s'], '.2f')} |"
        print(line)
    if args.json:
        payload = {
            "device": device,
            "cpu_cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": load_after,
            "args": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "runs": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
