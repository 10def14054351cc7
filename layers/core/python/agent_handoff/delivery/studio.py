"""Twilio Studio Executions API: start an execution, end one, find the contact's active one.

Studio has no idempotency key. What keeps a retried POST from starting a second execution is
Studio's rule that a contact has one active execution at a time: a repeat answers HTTP 409
(Twilio code 20409), reported here as `already_active`. That only says the contact is busy,
not with what: the dispatcher decides whose execution it is (see `busy_contact`).

A POST whose answer was lost (a read timeout) may have started an execution all the same; once
that execution has ended, a repeat meets no 409 and starts a second one. So the result says when
an attempt may have been acted on (`maybe_sent`), every execution carries its handoff's id beside
the HandoffData, and `find_started` looks for it (active or ended) before anything is posted again.

Every call works to a Deadline: request timeouts and retry sleeps are cut to what remains, and
an attempt that could not finish in time is not started. Answers of the wrong shape are treated
as no answer, never trusted.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from ..deadline import Deadline
from .twilio_http import MIN_REQUEST_SECONDS, Answer, TwilioHttp

log = logging.getLogger(__name__)

TWILIO_CODE_EXECUTION_ACTIVE = 20409
MAX_RETRY_AFTER_SECONDS = 10.0
# Studio's list has no filter by contact: the active executions are read page by page, this far at most.
LIST_PAGE_SIZE = 50
MAX_LIST_PAGES = 20
DEFAULT_BUDGET_SECONDS = 60.0
# Studio's clock and ours may disagree: executions are looked for from this long before a handoff.
CLOCK_SKEW_SECONDS = 300
# Answers that may come after Studio acted on the request (a gateway that gave up waiting).
MAYBE_ACTED_STATUSES = (502, 504)


class ExecutionResult(NamedTuple):
    kind: Literal["created", "already_active", "permanent", "transient"]
    execution_sid: str = ""
    status_code: int = 0
    detail: str = ""
    maybe_sent: bool = False  # an attempt got no answer: Studio may have started an execution


class EndResult(NamedTuple):
    ended: bool  # the execution is not active any more (ended now, before, or never existed)
    detail: str = ""


class ActiveExecution(NamedTuple):
    sid: str
    conversation_id: str  # from its HandoffData; "" when it carries none (this product did not start it)
    handoff_id: str = ""  # the handoff that started it, "" for executions started before it was sent
    created_at: int = 0  # epoch seconds by Studio's clock; 0 when Studio did not say
    status: str = "active"


class ActiveLookup(NamedTuple):
    found: ActiveExecution | None
    complete: bool  # False: Studio could not be read to the end, so `found=None` proves nothing
    detail: str = ""


def studio_time(epoch: int) -> str:
    """ISO 8601 in UTC, as Studio's DateCreatedFrom takes it (twilio's serialize.iso8601_datetime)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        self._http = TwilioHttp(credentials=credentials, read_timeout=timeout_seconds)
        self._max_attempts = max_attempts
        self._backoff = backoff_base_seconds
        self._sleep = sleep or time.sleep

    def start_execution(
        self, *, flow_sid: str, to: str, from_: str, parameters: str, deadline: Deadline | None = None
    ) -> ExecutionResult:
        """POST the execution, retrying 429, 5xx and network errors with capped exponential backoff."""
        deadline = deadline or Deadline.after(DEFAULT_BUDGET_SECONDS)
        url = f"{self._base_url}/v2/Flows/{flow_sid}/Executions"
        form = {"To": to, "From": from_, "Parameters": parameters}
        result = ExecutionResult(kind="transient", detail="not attempted")
        maybe_sent = False
        for attempt in range(1, self._max_attempts + 1):
            answer = self._http.request("POST", url, form=form, deadline=deadline)
            maybe_sent = maybe_sent or (answer.status == 0 and answer.sent) or answer.status in MAYBE_ACTED_STATUSES
            result = _execution_result(answer)
            if result.kind != "transient" or attempt == self._max_attempts or answer.error.startswith("deadline"):
                break
            delay = self._delay(attempt, answer.retry_after, deadline)
            if delay is None:
                result = result._replace(detail=f"{result.detail} (deadline: no time for attempt {attempt + 1})")
                break
            log.info("Studio attempt %d failed (%s); retrying in %.2fs", attempt, result.detail, delay)
            self._sleep(delay)
        return result._replace(maybe_sent=maybe_sent)

    def end_execution(self, *, flow_sid: str, execution_sid: str, deadline: Deadline) -> EndResult:
        """POST Status=ended, as twilio's `executions(sid).update(status="ended")` does; one retry."""
        url = f"{self._base_url}/v2/Flows/{flow_sid}/Executions/{execution_sid}"
        answer = Answer(0, {}, error="not attempted")
        for attempt in (1, 2):
            answer = self._http.request("POST", url, form={"Status": "ended"}, deadline=deadline)
            if answer.ok:
                return EndResult(True, f"ended {execution_sid}")
            if answer.status == 404:
                return EndResult(True, f"{execution_sid} does not exist")
            delay = self._delay(attempt, answer.retry_after, deadline) if answer.transient else None
            if delay is None:
                break
            self._sleep(delay)
        return EndResult(False, answer.detail())

    def active_execution(self, *, flow_sid: str, contact: str, deadline: Deadline) -> ActiveLookup:
        """The contact's active execution of the flow, and whose conversation it serves.

        The Executions list filters by status and creation date, not by contact (twilio-python's
        `executions.list(status=..., date_created_from=..., date_created_to=...)`), so the active
        ones are read page by page; the execution's Context says which conversation it serves.
        """
        url: str | None = f"{self._base_url}/v2/Flows/{flow_sid}/Executions?status=active&PageSize={LIST_PAGE_SIZE}"
        for _ in range(MAX_LIST_PAGES):
            if url is None:
                return ActiveLookup(None, complete=True)
            answer = self._http.request("GET", url, deadline=deadline)
            rows = _rows(answer)
            if rows is None:
                return ActiveLookup(None, complete=False, detail=f"listing executions: {_unusable(answer)}")
            for execution in rows:
                if execution["contact_channel_address"] == contact and execution["status"] == "active":
                    return self._with_context(flow_sid, execution, deadline)
            url = _next_page(answer.body, self._base_url)
        return ActiveLookup(None, complete=False, detail=f"more than {MAX_LIST_PAGES} pages of active executions")

    def find_started(
        self, *, flow_sid: str, contact: str, handoff_ids: Collection[str], since: int, deadline: Deadline
    ) -> ActiveLookup:
        """The contact's execution of the flow, active or ended, that one of `handoff_ids` started.

        For a POST whose answer was lost: Studio lists executions by creation date (from `since`,
        less the clock skew), and each of the contact's carries its handoff's id in its context.
        Bounded by the deadline and MAX_LIST_PAGES: `complete=False` when Studio could not be read
        to the end, and then nothing may be posted (it could start a second execution).
        """
        query = f"DateCreatedFrom={studio_time(since - CLOCK_SKEW_SECONDS)}&PageSize={LIST_PAGE_SIZE}"
        url: str | None = f"{self._base_url}/v2/Flows/{flow_sid}/Executions?{query}"
        unread = ""
        for _ in range(MAX_LIST_PAGES):
            if url is None:
                return ActiveLookup(None, complete=not unread, detail=unread)
            answer = self._http.request("GET", url, deadline=deadline)
            rows = _rows(answer)
            if rows is None:
                return ActiveLookup(None, complete=False, detail=f"listing executions: {_unusable(answer)}")
            for execution in rows:
                if execution["contact_channel_address"] != contact:
                    continue
                lookup = self._with_context(flow_sid, execution, deadline)
                if lookup.found is not None and lookup.found.handoff_id in handoff_ids:
                    return lookup
                unread = unread or lookup.detail
            url = _next_page(answer.body, self._base_url)
        return ActiveLookup(None, complete=False, detail=f"more than {MAX_LIST_PAGES} pages of executions")

    def _with_context(self, flow_sid: str, execution: dict[str, str], deadline: Deadline) -> ActiveLookup:
        sid = execution["sid"]
        answer = self._http.request(
            "GET", f"{self._base_url}/v2/Flows/{flow_sid}/Executions/{sid}/Context", deadline=deadline
        )
        data = _flow_data(answer.body) if answer.ok else None
        if data is None:
            return ActiveLookup(None, complete=False, detail=f"reading {sid}'s context: {_unusable(answer)}")
        found = ActiveExecution(
            sid,
            _conversation_id(data),
            handoff_id=data.get("handoffId") if isinstance(data.get("handoffId"), str) else "",
            created_at=_epoch(execution["date_created"]),
            status=execution["status"],
        )
        return ActiveLookup(found, complete=True)

    def _delay(self, attempt: int, retry_after: float | None, deadline: Deadline) -> float | None:
        """How long to wait before the next attempt, or None when it would not fit the deadline."""
        delay = retry_after if retry_after is not None else self._backoff * 2 ** (attempt - 1)
        delay = min(delay, MAX_RETRY_AFTER_SECONDS) * random.uniform(0.8, 1.2)
        room = deadline.remaining() - MIN_REQUEST_SECONDS
        if retry_after is not None and delay > room:
            return None  # Studio asked for more than is left: another attempt now would be refused too
        delay = min(delay, room)
        return delay if delay >= 0 else None


def _execution_result(answer: Answer) -> ExecutionResult:
    status, body = answer.status, answer.body
    if status in (200, 201):
        sid = str(body.get("sid") or "")
        if not sid.startswith("FN"):
            return ExecutionResult(kind="transient", status_code=status, detail="answer had no execution sid")
        return ExecutionResult(kind="created", execution_sid=sid, status_code=status)
    if status == 409 or body.get("code") == TWILIO_CODE_EXECUTION_ACTIVE:
        return ExecutionResult(kind="already_active", status_code=status, detail=answer.detail())
    if answer.transient:
        return ExecutionResult(kind="transient", status_code=status, detail=answer.detail())
    return ExecutionResult(kind="permanent", status_code=status, detail=answer.detail())


def _rows(answer: Answer) -> list[dict[str, str]] | None:
    """A page's executions, each with the fields read here as strings; None for an unusable answer."""
    executions = answer.body.get("executions") if answer.ok else None
    meta = answer.body.get("meta") or {}
    if not isinstance(executions, list) or not isinstance(meta, dict):
        return None
    if not isinstance(meta.get("next_page_url") or "", str):
        return None
    rows = []
    for execution in executions:
        if not isinstance(execution, dict) or not isinstance(execution.get("sid"), str) or not execution["sid"]:
            return None
        rows.append(
            {
                "sid": execution["sid"],
                "contact_channel_address": str(execution.get("contact_channel_address") or ""),
                "status": str(execution.get("status") or "active"),
                "date_created": str(execution.get("date_created") or ""),
            }
        )
    return rows


def _unusable(answer: Answer) -> str:
    return answer.detail() if not answer.ok else f"HTTP {answer.status} with an answer of the wrong shape"


def _flow_data(body: dict[str, Any]) -> dict[str, Any] | None:
    """`context.flow.data` (the Parameters an execution started with); {} when it has none, None when malformed."""
    context = body.get("context")
    if not isinstance(context, dict):
        return None
    flow = context.get("flow") or {}
    data = (flow.get("data") or {}) if isinstance(flow, dict) else None
    return data if isinstance(data, dict) else None


def _epoch(value: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _conversation_id(data: dict[str, Any]) -> str:
    """`HandoffData.conversationId` of an execution's flow data: the Parameters this product starts executions with."""
    handoff = data.get("HandoffData")
    if isinstance(handoff, str):  # a flow may hold the parameter as the JSON string it was sent as
        try:
            handoff = json.loads(handoff)
        except ValueError:
            return ""
    return str(handoff.get("conversationId") or "") if isinstance(handoff, dict) else ""


def _next_page(body: dict[str, Any], base_url: str) -> str | None:
    url = (body.get("meta") or {}).get("next_page_url")  # its shape was checked with the page's rows
    if not url:
        return None
    # Studio answers with absolute studio.twilio.com URLs; keep the configured base (a recorder in tests).
    path = url.split("://", 1)[-1].partition("/")[2]
    return f"{base_url}/{path}"
