"""Running `make` as a person does (CI=true, no stdin) against a stand-in virtualenv: shared by the
command tests (test_commands.py, test_first_hour.py) so they run the Makefile the same way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devtools.template import ROOT

TRACEBACK = "Traceback (most recent call last)"


def stand_in_venv(directory: Path) -> Path:
    """A VENV whose python is this interpreter and whose setup stamp is fresh: the Makefile's recipes
    run without creating or touching any virtualenv."""
    (directory / "bin").mkdir()
    python = directory / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (directory / "bin" / ".installed").touch()  # newer than the requirements files: setup is done
    return directory


def make(
    venv: Path, environ: dict[str, str], *args: str, timeout: float = 180, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *args, f"VENV={venv}"],
        cwd=ROOT,
        env={**environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
