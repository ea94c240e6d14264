"""Where a batch-64 RSRAE training step's time goes, and the most any framework could gain.

    python scripts/profile_train_step.py [--threads 1 2] [--batch-size 64]
        [--bench-json bench.json]   # bench_train.py's --json: adds the ratio ceilings

Times the same step (forward, RSRAE loss, backward, norm clipping at 1.0, fused AdamW) of the
same network on in-memory random batches three ways, each in a fresh process:

raw:       a plain PyTorch loop, nothing else: the floor every Lightning-based loop stands on.
lightning: a bare `Trainer.fit` (no logger, checkpoints or progress bar) of a minimal module.
ours:      robustad's `RSRAEModule` (its logging, finiteness check, gradient-norm log) in that
           same bare Trainer, so the difference to `lightning` is the module's own cost.

Then the PyTorch profiler's top operators of the raw step. With `--bench-json`, the notebook
loop's samples/s measured by `bench_train.py` divided by the raw loop's gives the ratio that
a framework with no overhead at all (and no data pipeline cost) would reach.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from robustad.models.networks import RSRAutoencoder
from robustad.models.rsrae import rsrae_loss_terms

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "robustad" / "configs"
SETUPS = ("raw", "lightning", "ours")
WARMUP, TIMED = 50, 400


def batches(batch_size: int, n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(batch_size, 1, 28, 28, generator=generator) for _ in range(n)]


def raw_step(net: RSRAutoencoder, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """One training step written out in plain PyTorch."""
    out = net(x)
    loss = rsrae_loss_terms(x, out.x_hat, out.z, net.rsr.A, 0.1, 0.1)["loss"].mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    optimizer.step()


def raw_setup() -> tuple[RSRAutoencoder, torch.optim.Optimizer]:
    net = RSRAutoencoder(input_shape=(1, 28, 28))
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)


def raw_loop(batch_size: int) -> float:
    """Seconds per step of the plain PyTorch loop."""
    net, optimizer = raw_setup()
    data = batches(batch_size, 16)
    for i in range(WARMUP):
        raw_step(net, optimizer, data[i % len(data)])
    start = time.perf_counter()
    for i in range(TIMED):
        raw_step(net, optimizer, data[i % len(data)])
    return (time.perf_counter() - start) / TIMED


class MinimalModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = RSRAutoencoder(input_shape=(1, 28, 28))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        out = self.net(x)
        return rsrae_loss_terms(x, out.x_hat, out.z, self.net.rsr.A, 0.1, 0.1)["loss"].mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)


class StepClock(pl.Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.starts.append(time.perf_counter())


class Batches:
    """An in-memory 'loader' of `n` dict batches (no data pipeline cost)."""

    def __init__(self, batch_size: int, n: int) -> None:
        self.data = [{"image": x} for x in batches(batch_size, 16)]
        self.n = n

    def __iter__(self) -> Any:
        return (self.data[i % len(self.data)] for i in range(self.n))

    def __len__(self) -> int:
        return self.n


def our_module() -> pl.LightningModule:
    """robustad's RSRAE module as `model=rsrae` composes it (joint mode, default network)."""
    model_cfg = OmegaConf.load(CONFIG_DIR / "model" / "rsrae.yaml")
    model_cfg.net.input_shape = [1, 28, 28]
    model_cfg.scheduler = None  # the other two setups have no schedule either
    return instantiate(model_cfg)


def lightning_loop(batch_size: int, module: pl.LightningModule) -> float:
    """Seconds per step of a bare Trainer.fit over in-memory batches."""
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        callbacks=[clock],
    )
    trainer.fit(module, Batches(batch_size, WARMUP + TIMED + 1))
    timed = clock.starts[WARMUP:]
    return (timed[-1] - timed[0]) / (len(timed) - 1)


def operator_table(batch_size: int) -> str:
    """The profiler's top operators (self CPU time) over 100 raw steps."""
    from torch.profiler import ProfilerActivity, profile

    net, optimizer = raw_setup()
    x = batches(batch_size, 1)[0]
    for _ in range(20):
        raw_step(net, optimizer, x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(100):
            raw_step(net, optimizer, x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def worker(setup: str, batch_size: int, threads: int) -> None:
    torch.set_num_threads(threads)
    pl.seed_everything(0, verbose=False)
    if setup == "raw":
        seconds = raw_loop(batch_size)
    else:
        module = MinimalModule() if setup == "lightning" else our_module()
        seconds = lightning_loop(batch_size, module)
    print("RESULT " + json.dumps({"ms_per_step": 1e3 * seconds}))


def measure(setup: str, batch_size: int, threads: int) -> float:
    command = [sys.executable, __file__, "--worker", setup, "--batch-size", str(batch_size)]
    done = subprocess.run([*command, "--threads", str(threads)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{setup} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))["ms_per_step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bench-json", type=Path, default=None, help="bench_train.py --json")
    parser.add_argument("--worker", choices=SETUPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch_size, args.threads[0])
        return
    notebook: dict[int, float] = {}
    if args.bench_json:
        for row in json.loads(args.bench_json.read_text())["summary"]:
            if row["batch_size"] == args.batch_size:
                notebook[row["threads"]] = row["notebook_samples_per_s"]
    print(
        f"batch {args.batch_size}, medians of {args.repeats} interleaved repeats, torch "
        f"{torch.__version__}, Lightning {pl.__version__}"
    )
    print("| threads | setup | ms per step | samples/s | ratio ceiling vs notebook |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        times: dict[str, list[float]] = {setup: [] for setup in SETUPS}
        for _ in range(args.repeats):
            for setup in SETUPS:
                times[setup].append(measure(setup, args.batch_size, threads))
        for setup in SETUPS:
            ms = statistics.median(times[setup])
            rate = args.batch_size / ms * 1e3
            ceiling = f"{rate / notebook[threads]:.2f}x" if threads in notebook else "-"
            print(f"| {threads} | {setup} | {ms:.2f} | {rate:.0f} | {ceiling} |")
    torch.set_num_threads(1)
    print("\nTop operators of the raw step, 1 thread (PyTorch profiler, 100 steps):")
    print(operator_table(args.batch_size))


if __name__ == "__main__":
    main()
