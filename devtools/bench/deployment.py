"""Build the bundle as `sam build` does, from the same Makefiles, without the SAM CLI.

The bench measures cold starts on this shape rather than on the dev venv: only the function's
folder, the two layers and a boto3 "runtime" on the path, read-only (`-B`), with or without
the bytecode the Makefiles ship.
"""

from __future__ import annotations

import os
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
    opt: Path  # the layers merged as Lambda extracts them, in order, into one /opt

    def path_for(self, logical_id: str) -> list[Path]:
        """sys.path as Lambda sets it: the function's code, then /opt/python that every layer shares."""
        return [self.functions[logical_id], self.opt / "python"]


def host_arch() -> str:
    """The dependencies layer's platform tag for this machine."""
    return "x86_64" if platform.machine().lower() in ("x86_64", "amd64") else "aarch64"


def runtime_python(version: str) -> str | None:
    """An interpreter of the runtime's minor version (on PATH or installed by pyenv); None when there is none."""
    if python_version(sys.executable) == version:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    # pyenv's shim on PATH fails unless the version is selected, so its installs are looked at directly.
    installed = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in [shutil.which(f"python{version}"), *map(str, installed)]:
        if candidate and python_version(candidate) == version:
            return candidate
    return None


def python_version(python: str) -> str | None:
    """'3.13' for a working Python 3.13 interpreter; None when it does not run."""
    if python == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


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
    opt = workdir / "opt"
    shutil.rmtree(opt, ignore_errors=True)
    for logical_id, source in LAYERS.items():
        out = workdir / logical_id
        _make(source, f"build-{logical_id}", out, variables)
        layers.append(out / "python")
        shutil.copytree(out, opt, dirs_exist_ok=True)
    functions = {}
    for logical_id in logical_ids or list(template_functions()):
        out = workdir / logical_id
        _make(ROOT / "functions", f"build-{logical_id}", out, variables)
        functions[logical_id] = out
    return Build(functions=functions, layers=layers, opt=opt)


def install_runtime(workdir: Path, also_compiled_by: str | None = None) -> Path:
    """What the Lambda Python runtime provides beside the stdlib: boto3, compiled, at our pinned version.

    pip compiles it for this interpreter; `also_compiled_by` adds the bytecode of another
    (the runtime's version), as the Lambda runtime ships its boto3 compiled.
    """
    import boto3

    target = workdir / "runtime"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--target", str(target), f"boto3=={boto3.__version__}"], check=True, capture_output=True)
    if also_compiled_by and also_compiled_by != sys.executable:
        subprocess.run([also_compiled_by, "-m", "compileall", "-q", "-j", "0", str(target)], check=True)
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
