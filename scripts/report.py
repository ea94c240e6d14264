"""`python scripts/report.py <sweep dir> [--plot]`: the same as the `robustad-report` command."""

from robustad.report import main

if __name__ == "__main__":
    raise SystemExit(main())
