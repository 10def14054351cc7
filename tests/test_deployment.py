"""The bench's view of a deployment: the runtime's Python (PATH first, then pyenv's installs) and
the layers merged into one /opt as Lambda extracts them."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from devtools.bench import deployment
from devtools.bench.deployment import python_version, runtime_python


def fake_python(path: Path, prints: str, exit_code: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {prints}\nexit {exit_code}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def nothing_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    return tmp_path / "pyenv"


def test_this_interpreter_is_its_own_version():
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python_version(sys.executable) == here and runtime_python(here) == sys.executable


def test_pyenv_install_is_found_when_its_shim_is_not_selected(nothing_on_path):
    broken = fake_python(nothing_on_path / "versions/3.98.2/bin/python3.98", "3.98", exit_code=1)
    working = fake_python(nothing_on_path / "versions/3.98.1/bin/python3.98", "3.98")
    assert python_version(str(broken)) is None
    assert runtime_python("3.98") == str(working)


def test_a_python_on_path_comes_first(nothing_on_path, monkeypatch, tmp_path):
    fake_python(nothing_on_path / "versions/3.98.1/bin/python3.98", "3.98")
    on_path = fake_python(tmp_path / "bin/python3.98", "3.98")
    monkeypatch.setenv("PATH", f"{on_path.parent}{os.pathsep}{os.environ['PATH']}")
    assert runtime_python("3.98") == str(on_path)


def test_none_when_nothing_of_that_version_runs(nothing_on_path):
    fake_python(nothing_on_path / "versions/3.98.1/bin/python3.98", "3.97")  # lies about its version
    assert runtime_python("3.98") is None


def test_layers_merge_into_one_opt_in_the_templates_order(monkeypatch, tmp_path):
    def fake_make(directory: Path, target: str, out: Path, variables: list[str]) -> None:
        name = target.removeprefix("build-")
        (out / "python" / "shared").mkdir(parents=True, exist_ok=True)
        (out / "python" / f"{name}.py").write_text("")
        (out / "python" / "shared" / "last.txt").write_text(name)

    monkeypatch.setattr(deployment, "_make", fake_make)
    (tmp_path / "opt" / "python").mkdir(parents=True)
    (tmp_path / "opt" / "python" / "stale.py").write_text("")  # from an earlier build in the same place

    built = deployment.build(
        tmp_path, arch="x86_64", python_version="3.13", bytecode_python=None, logical_ids=["VoiceRelayFunction"]
    )

    opt = tmp_path / "opt" / "python"
    assert built.path_for("VoiceRelayFunction") == [tmp_path / "VoiceRelayFunction", opt]
    assert sorted(p.name for p in opt.glob("*.py")) == ["CoreLayer.py", "DependenciesLayer.py"]
    assert (opt / "shared" / "last.txt").read_text() == list(deployment.LAYERS)[-1]
    assert built.layers == [tmp_path / name / "python" for name in deployment.LAYERS]
