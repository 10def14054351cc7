"""One request to a Twilio REST API, cut to the caller's deadline: what Studio and Messages share.

urllib3 rather than httpx or twilio's REST client: botocore has already imported urllib3 in
every function, so these calls add no import and no eager trust-store load to a cold start
(httpx cost 0.2x of the floor; see README, Benchmarks). Retries are the callers' own, because
each knows which answers are safe to repeat (a Studio POST is, a Messages POST is not).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple
from urllib.parse import urlencode

import urllib3

from ..deadline import Deadline
from ..masking import mask_phones_in

# Below this, a request could not get an answer anyway: it is not started.
MIN_REQUEST_SECONDS = 0.5


class Answer(NamedTuple):
    status: int  # 0: no HTTP answer (see `error`)
    body: dict[str, Any]
    retry_after: float | None = None
    error: str = ""  # why there is no answer: "deadline", "timed out", "network error: ..."
    sent: bool = True  # False only when the request certainly never reached Twilio

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """Worth trying again: no answer, throttled, or a server error."""
        return self.status == 0 or self.status == 429 or self.status >= 500

    def detail(self) -> str:
        if self.status == 0:
            return self.error
        code = self.body.get("code")
        message = mask_phones_in(str(self.body.get("message") or "")[:300])
        return f"HTTP {self.status}" + (f" code {code}" if code else "") + (f": {message}" if message else "")


class TwilioHttp:
    def __init__(
        self, *, credentials: tuple[str, str], connect_timeout: float = 3.0, read_timeout: float = 10.0
    ) -> None:
        self._headers = {**urllib3.make_headers(basic_auth=":".join(credentials)), "Accept": "application/json"}
        self._connect = connect_timeout
        self._read = read_timeout
        self._pool = urllib3.PoolManager(retries=False, maxsize=2)

    def request(self, method: str, url: str, *, deadline: Deadline, form: dict[str, str] | None = None) -> Answer:
        remaining = deadline.remaining()
        if remaining < MIN_REQUEST_SECONDS:
            return Answer(0, {}, error="deadline: no time left for a request", sent=False)
        timeout = urllib3.Timeout(
            connect=min(self._connect, remaining), read=min(self._read, remaining), total=remaining
        )
        headers = dict(self._headers)
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form)
        try:
            response = self._pool.request(method, url, body=body, headers=headers, timeout=timeout)
        except urllib3.exceptions.NewConnectionError as exc:  # urllib3 files it under timeouts; nothing was sent
            return Answer(0, {}, error=f"network error: {type(exc).__name__}", sent=False)
        except urllib3.exceptions.ConnectTimeoutError:
            return Answer(0, {}, error="network error: connect timed out", sent=False)
        except urllib3.exceptions.TimeoutError:
            # The request may have reached Twilio and been acted on: only the answer is missing.
            return Answer(0, {}, error="timed out")
        except urllib3.exceptions.HTTPError as exc:
            return Answer(0, {}, error=f"network error: {type(exc).__name__}")
        return Answer(response.status, _json_or_empty(response), _retry_after(response))


def _json_or_empty(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
