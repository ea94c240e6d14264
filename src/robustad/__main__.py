"""`python -m robustad [train|eval|score|report] ...`; with no command name, `train`.

python -m robustad model=rsrae data=digits        # = robustad-train
python -m robustad eval ckpt_path=last.ckpt       # = robustad-eval
python -m robustad score --ckpt last.ckpt --input images/
python -m robustad report outputs/train/multiruns/<time>
"""

from __future__ import annotations

import sys


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "train"
    if command in ("train", "eval", "score", "report"):
        del sys.argv[1]
    else:
        command = "train"
    sys.argv[0] = f"robustad {command}"
    if command == "train":
        from robustad.cli import train_main

        train_main()
    elif command == "eval":
        from robustad.cli import eval_main

        eval_main()
    elif command == "score":
        from robustad.score import main as score_main

        sys.exit(score_main())
    else:
        from robustad.report import main as report_main

        sys.exit(report_main())


if __name__ == "__main__":
    main()
