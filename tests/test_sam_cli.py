"""The SAM CLI itself validates and builds the bundle, with no Docker and no Python 3.13 needed.

`make test` installs the SAM CLI in its own venv and passes it as SAM_CLI; CI always runs these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.template import ROOT

SAM = os.environ.get("SAM_CLI") or shutil.which("sam")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SAM and not os.environ.get("CI"), reason="SAM CLI not installed: `make test` installs it in .venv-sam"
    ),
]


def sam(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    assert SAM, "CI must run these: the SAM CLI was not found (SAM_CLI or PATH)"
    result = subprocess.run(
        [SAM, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", **(env or {})},
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_sam_validate_lint():
    result = sam("validate", "--lint")
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build_default_arm64(tmp_path):
    build = tmp_path / "build"
    sam("build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache"))

    for function in (
        "InboundSmsFunction",
        "HandoffDispatchFunction",
        "IncomingCallFunction",
        "VoiceRelayFunction",
        "VoiceActionFunction",
    ):
        assert [p.name for p in (build / function).rglob("*") if p.is_file()] == ["app.py"]
    assert (build / "CoreLayer" / "python" / "agent_handoff" / "wiring.py").is_file()
    cores = list((build / "DependenciesLayer" / "python" / "pydantic_core").glob("*.so"))
    assert cores and all("aarch64" in c.name and "cpython-313" in c.name for c in cores)
    assert (build / "template.yaml").is_file()
