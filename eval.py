"""`python eval.py ckpt_path=...`: the same as `robustad-eval` (robustad.cli)."""

from robustad.cli import eval_main

if __name__ == "__main__":
    eval_main()
