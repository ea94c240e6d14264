"""Hydra entry: `python eval.py ckpt_path=... [data=...]`. The work is in robustad.evaluate."""

import hydra
from omegaconf import DictConfig

from robustad.evaluate import run_evaluation


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_evaluation(cfg)


if __name__ == "__main__":
    main()
