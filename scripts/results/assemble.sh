#!/usr/bin/env bash
# Regenerate docs/results.md: the prose of scripts/results/results_template.md with every
# `@@RUN <command>@@` replaced by that command's output (run from the repository root, with the
# sweep folders under /tmp/results as made by the commands in the template).
set -euo pipefail
cd "$(dirname "$0")/../.."
python - scripts/results/results_template.md > docs/results.md.tmp <<'PY'
import re
import subprocess
import sys

text = open(sys.argv[1]).read()


def run(match: re.Match) -> str:
    done = subprocess.run(match.group(1), shell=True, capture_output=True, text=True)
    return done.stdout.rstrip()


print(re.sub(r"@@RUN (.*?)@@", run, text))
PY
mv docs/results.md.tmp docs/results.md
