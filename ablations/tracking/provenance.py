"""Where and with what a run was trained, as run tags: the code's commit, the hardware and
what else the machine had to do. Torch loads only when a tag needs it."""

from __future__ import annotations

import os
import platform
import subprocess


def git_commit() -> str:
    """The commit of the code that runs (``-dirty`` with uncommitted changes), read from the
    checkout this package lives in, whatever the working directory; ``unknown`` outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=here,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=here,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> str:
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}; {cpu}"
    return f"CPU only; {cpu}"


def machine_conditions() -> dict[str, str]:
    """Tags saying what else the machine had to do when this run started: CPU count, GPU and
    the 1-, 5- and 15-minute load averages."""
    import torch

    one, five, fifteen = os.getloadavg()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu_count": str(os.cpu_count() or 0),
        "gpu": gpu,
        "load_avg_start": f"{one:.2f} {five:.2f} {fifteen:.2f}",
    }
