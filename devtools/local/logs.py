"""The functions' log lines for a person: one line per event, instead of one JSON object per line.

    20:43:35.105 inbound-sms       replied  message_sid=SM9d... customer=+14*******00 handed_off=false

Powertools' JSON lines become: time, function (its service), level when not INFO, what happened,
then the ids and fields the line carried. CloudWatch EMF lines (metrics) become `metric Name +1
dim=value`. Anything else passes through unchanged, so a banner printed on the same stream is
untouched. `make local JSON=1` (`--json`) keeps the raw lines.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any, TextIO

# Keys every Powertools line carries that say nothing about this event.
ROUTINE = {
    "level",
    "location",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "name",
    "xray_trace_id",
    "sampling_rate",
    "exception",
    "exception_name",
    "stack_trace",
}


def render(line: str, state: dict[str, Any] | None = None) -> str | None:
    """The person's version of one line; None to leave it out (a metric when metrics are hidden)."""
    state = {} if state is None else state
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    if "_aws" in record:
        return _metric(record, state) if state.get("metrics", True) else None
    if "message" not in record or "level" not in record:
        return line
    service = str(record.get("service") or "")
    state["service"] = service
    clock = str(record.get("timestamp", ""))[11:23].replace(",", ".")
    level = "" if record["level"] == "INFO" else f"{record['level']} "
    fields = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in ROUTINE and v not in (None, ""))
    text = f"{clock} {service:17} {level}{record['message']}" + (f"  {fields}" if fields else "")
    if record.get("exception"):
        last = str(record["exception"]).strip().splitlines()[-1]
        text += f"\n{' ' * 31}{last}   (JSON=1 shows the traceback: the raw lines, as CloudWatch gets them)"
    return text


def _metric(record: dict[str, Any], state: dict[str, Any]) -> str:
    aws = record["_aws"]
    names = [m["Name"] for directive in aws.get("CloudWatchMetrics", []) for m in directive.get("Metrics", [])]
    dimensions = [
        d for directive in aws.get("CloudWatchMetrics", []) for group in directive["Dimensions"] for d in group
    ]
    values = " ".join(f"{n} {_value(record.get(n))}" for n in names)
    tags = " ".join(f"{d}={record.get(d)}" for d in dimensions if d != "service")  # the line names it
    service = state.get("service", "")
    return f"{' ' * 12} {service:17} metric {values}" + (f"  {tags}" if tags else "")


def _value(value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    return ",".join(f"+{v:g}" if isinstance(v, (int, float)) else str(v) for v in values)


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class HumanLogs(io.TextIOBase):
    """A text stream that renders each complete line written to it; safe to share between threads.

    Each thread keeps its own partial line (print() writes the text and its newline separately),
    so concurrent invocations never splice their lines together.
    """

    def __init__(self, target: TextIO, *, metrics: bool = True) -> None:
        super().__init__()
        self._target = target
        self._state = threading.local()
        self._lock = threading.Lock()
        self._metrics = metrics

    def _local(self) -> Any:
        if not hasattr(self._state, "pending"):
            self._state.pending = ""
            self._state.fields = {"metrics": self._metrics}
        return self._state

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        local = self._local()
        local.pending += text
        *lines, local.pending = local.pending.split("\n")
        rendered = [r for r in (render(line, local.fields) for line in lines) if r is not None]
        if rendered:
            with self._lock:
                self._target.write("".join(r + "\n" for r in rendered))
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")
