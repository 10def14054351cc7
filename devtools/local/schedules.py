"""The template's EventBridge schedules, as timers in the local stack.

A function with a `Schedule` event runs every `interval` seconds here, faster than its
deployed rate (the watchdog's minute) so that a local run sees stuck work recovered in seconds.
Each run gets EventBridge's Scheduled Event and a context counting down from the function's
Timeout, as in Lambda. A run that fails is logged; the next one comes anyway.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from devtools.local.lambdas import LambdaContext

log = logging.getLogger("devtools.local.schedules")


class ScheduleRunner:
    def __init__(
        self,
        *,
        function: str,
        handler: Callable[[dict, Any], Any],
        interval: float,
        timeout_seconds: float,
        rule: str,
    ) -> None:
        self._function = function
        self._handler = handler
        self._interval = interval
        self._timeout = timeout_seconds
        self._rule = rule
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{function}", daemon=True)
        self.runs = 0
        self.failures = 0
        self.results: deque[Any] = deque(maxlen=10_000)  # what each run answered, newest last

    def start(self) -> ScheduleRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self._timeout + 5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.run_once()

    def run_once(self) -> Any:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{self._rule}"],
            "detail": {},
        }
        self.runs += 1
        try:
            result = self._handler(event, LambdaContext(function_name=self._function, timeout_seconds=self._timeout))
        except Exception:
            self.failures += 1
            log.exception("scheduled run of %s failed", self._function)
            return None
        self.results.append(result)
        return result
