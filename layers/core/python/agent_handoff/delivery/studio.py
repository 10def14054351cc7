"""Twilio Studio Executions API client: starts one flow execution and says how it went.

Studio has no idempotency key. What keeps a retried POST from starting a second execution
is Studio's own rule that a contact has one active execution at a time: a repeat answers
HTTP 409 (Twilio code 20409), which is reported as `already_active`, not as a failure.

It speaks urllib3, not httpx: botocore has already imported urllib3 in every function, so
the one HTTPS call the dispatcher makes adds no import and no eager trust-store load to its
cold start (httpx's cost 0.2x of the floor; see README, Benchmarks).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

import urllib3

from ..masking import mask_phones_in

log = logging.getLogger(__name__)

TWILIO_CODE_EXECUTION_ACTIVE = 20409
MAX_RETRY_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class ExecutionResult:
    kind: Literal["created", "already_active", "permanent", "transient"]
    execution_sid: str = ""
    status_code: int = 0
    detail: str = ""


class StudioClient:
    def __init__(
        self,
        *,
        base_url: str,
        credentials: tuple[str, str],
        max_attempts: int = 4,
        timeout_seconds: float = 10.0,
        backoff_base_seconds: float = 0.5,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {
            **urllib3.make_headers(basic_auth=":".join(credentials)),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        # Retries are ours (they honour Retry-After and Studio's 409); urllib3 makes one attempt.
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=timeout_seconds), retries=False, maxsize=1
        )
        self._max_attempts = max_attempts
        self._backoff = backoff_base_seconds
        self._sleep = sleep or time.sleep

    def start_execution(self, *, flow_sid: str, to: str, from_: str, parameters: str) -> ExecutionResult:
        """POST the execution, retrying 429, 5xx and network errors with capped exponential backoff."""
        result = ExecutionResult(kind="transient", detail="not attempted")
        for attempt in range(1, self._max_attempts + 1):
            result, retry_after = self._post_once(flow_sid, {"To": to, "From": from_, "Parameters": parameters})
            if result.kind != "transient" or attempt == self._max_attempts:
                break
            delay = retry_after if retry_after is not None else self._backoff * 2 ** (attempt - 1)
            delay = min(delay, MAX_RETRY_AFTER_SECONDS) * random.uniform(0.8, 1.2)
            log.info("Studio attempt %d failed (%s); retrying in %.2fs", attempt, result.detail, delay)
            self._sleep(delay)
        return result

    def _post_once(self, flow_sid: str, form: dict[str, str]) -> tuple[ExecutionResult, float | None]:
        try:
            response = self._pool.request(
                "POST",
                f"{self._base_url}/v2/Flows/{flow_sid}/Executions",
                body=urlencode(form),
                headers=self._headers,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # urllib3 files it under timeouts; nothing was sent
            return ExecutionResult(kind="transient", detail=f"network error: {type(exc).__name__}"), None
        except urllib3.exceptions.TimeoutError:
            # The request may have reached Studio; a retry then meets 409, which is success.
            return ExecutionResult(kind="transient", detail="timed out"), None
        except urllib3.exceptions.HTTPError as exc:
            return ExecutionResult(kind="transient", detail=f"network error: {type(exc).__name__}"), None
        status = response.status
        body = _json_or_empty(response)
        if status in (200, 201):
            sid = str(body.get("sid") or "")
            if not sid.startswith("FN"):
                return ExecutionResult(kind="transient", status_code=status, detail="answer had no execution sid"), None
            return ExecutionResult(kind="created", execution_sid=sid, status_code=status), None
        detail = _twilio_error(status, body)
        if status == 409 or body.get("code") == TWILIO_CODE_EXECUTION_ACTIVE:
            return ExecutionResult(kind="already_active", status_code=status, detail=detail), None
        if status == 429 or status >= 500:
            return ExecutionResult(kind="transient", status_code=status, detail=detail), _retry_after(response)
        return ExecutionResult(kind="permanent", status_code=status, detail=detail), None


def _json_or_empty(response: urllib3.BaseHTTPResponse) -> dict:
    try:
        body = json.loads(response.data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _twilio_error(status: int, body: dict) -> str:
    code = body.get("code")
    message = mask_phones_in(str(body.get("message") or "")[:300])
    return f"HTTP {status}" + (f" code {code}" if code else "") + (f": {message}" if message else "")


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
