"""`python train.py model=rsrae data=mnist`: the same as `robustad-train` (robustad.cli)."""

from robustad.cli import train_main

if __name__ == "__main__":
    train_main()
