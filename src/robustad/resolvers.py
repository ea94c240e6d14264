"""OmegaConf resolvers the shipped configs use; registered when `robustad` is imported."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

from omegaconf import OmegaConf

# Longest job folder name; most filesystems allow 255 bytes per path component.
MAX_DIRNAME = 200
# Characters kept as they are in job folder names; everything else is %-escaped (`/` -> %2F).
DIRNAME_SAFE = "=,[]+"


def job_dirname(num: int | str, override_dirname: str) -> str:
    """`<num>_<overrides>` with path separators escaped and a bounded length.

    Names stay readable (`3_data.contamination=0.1,data.inlier_classes=[1]`); a value holding a
    path no longer makes nested folders, and a too-long name is cut and given a hash of the full
    name so that two different jobs never share a folder.
    """
    if not override_dirname:
        return str(num)
    name = f"{num}_{quote(str(override_dirname), safe=DIRNAME_SAFE)}"
    if len(name) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_DIRNAME - len(digest) - 1]}-{digest}"


def register_resolvers() -> None:
    """`${robustad.cwd:}` is the launch folder (paths.root_dir), `${robustad.job_dirname:...}`
    names sweep jobs (configs/hydra/default.yaml).

    `${robustad.cwd:}` replaces `${hydra:runtime.cwd}`, which Hydra cannot resolve while it names
    the sweep folder (HydraConfig is not set yet), so every plain `-m` run crashed with it.
    """
    OmegaConf.register_new_resolver("robustad.cwd", os.getcwd, replace=True)
    OmegaConf.register_new_resolver("robustad.job_dirname", job_dirname, replace=True)
