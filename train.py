"""Hydra entry point: `python train.py model=rsrae data=mnist`. The work is in robustad.train."""

import hydra
from omegaconf import DictConfig

from robustad.cli import run_training


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_training(cfg)


if __name__ == "__main__":
    main()
