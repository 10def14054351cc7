"""Loading a function's handler module the way Lambda does, and a context object for it."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from types import ModuleType

from devtools.template import ROOT


def load_function(function_dir: str) -> ModuleType:
    """Import functions/<dir>/app.py under a unique module name (every handler is called app)."""
    path = ROOT / "functions" / function_dir / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{function_dir}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    # Set, the remaining time counts down from the function's timeout as in Lambda; unset, it is 20 s.
    timeout_seconds: float | None = None
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        if self.timeout_seconds is None:
            return 20_000
        return max(0, int((self.started + self.timeout_seconds - time.monotonic()) * 1000))
