"""Build the bundle as `sam build` does, from the same Makefiles, without the SAM CLI.

The bench measures cold starts on this shape rather than on the dev venv: only the function's
folder, the two layers and a boto3 "runtime" on the path, read-only (`-B`), with or without
the bytecode the Makefiles ship.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devtools.template import ROOT
from devtools.template_functions import functions as template_functions

LAYERS = {"CoreLayer": ROOT / "layers" / "core", "DependenciesLayer": ROOT / "layers" / "dependencies"}


@dataclass(frozen=True)
class Build:
    functions: dict[str, Path]  # logical id -> the function's code directory
    layers: list[Path]  # each layer's python/ directory, in the template's order

    def path_for(self, logical_id: str) -> list[Path]:
        return [self.functions[logical_id], *self.layers]


def host_arch() -> str:
    """The dependencies layer's platform tag for this machine."""
    return "x86_64" if platform.machine().lower() in ("x86_64", "amd64") else "aarch64"


def runtime_python(version: str) -> str | None:
    """An interpreter of the runtime's minor version, for bytecode; None when there is none."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", ""], capture_output=True, check=False).returncode == 0:
        return found
    return None


def build(
    workdir: Path, *, arch: str, python_version: str, bytecode_python: str | None, logical_ids: list[str] | None = None
) -> Build:
    """Every function and both layers under `workdir`; no bytecode when `bytecode_python` is None."""
    variables = [
        f"LAYER_ARCH={arch}",
        f"LAYER_PYTHON_VERSION={python_version}",
        f"PYC_PYTHON={bytecode_python or ''}",
        f"PYTHON={sys.executable}",
    ]
    layers = []
    for logical_id, source in LAYERS.items():
        out = workdir / logical_id
        _make(source, f"build-{logical_id}", out, variables)
        layers.append(out / "python")
    functions = {}
    for logical_id in logical_ids or list(template_functions()):
        out = workdir / logical_id
        _make(ROOT / "functions", f"build-{logical_id}", out, variables)
        functions[logical_id] = out
    return Build(functions=functions, layers=layers)


def install_runtime(workdir: Path) -> Path:
    """What the Lambda Python runtime provides beside the stdlib: boto3, compiled, at our pinned version."""
    import boto3

    target = workdir / "runtime"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--target", str(target), f"boto3=={boto3.__version__}"], check=True, capture_output=True)
    return target


def _make(directory: Path, target: str, out: Path, variables: list[str]) -> None:
    result = subprocess.run(
        ["make", "-s", target, f"ARTIFACTS_DIR={out}", *variables],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"make {target} failed:\n{result.stderr[-2000:]}")


def missing_bytecode(directory: Path, cache_tag: str) -> list[str]:
    """Modules under `directory` without an unchecked hash-based .pyc for `cache_tag` (e.g. cpython-313)."""
    missing = []
    for source in sorted(directory.rglob("*.py")):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"
        # PEP 552: flags 0b01 = hash-based, source never checked (the zip keeps no file times).
        if not compiled.is_file() or int.from_bytes(compiled.read_bytes()[4:8], "little") != 0b01:
            missing.append(str(source.relative_to(directory)))
    return missing
