"""Releasing a conversation from its human, so the AI answers again.

Called by the Studio flow or Flex when the human conversation ends. It is authenticated with
a shared token (in the stack's secret): Studio's HTTP widget cannot sign requests the way
Twilio signs webhooks, but it can send basic auth in the URL, and a Twilio Function or Flex
plugin can send a bearer token.

A release may name the handoff it is for (`handoffId`, and/or the payload's `conversationId`):
then only that handoff is released, and a customer who has handed off again since keeps their new
human (409). Without either, the customer's current hold is released (the original two-field form).

Releasing also ends the Studio execution the handoff started (best effort, and said in the
answer): Studio keeps one active execution per contact, and a released one left active would
hold the contact, so the customer's next handoff would reach nobody. A handoff not delivered
yet is marked released instead: its dispatcher then posts nothing, or ends the execution it
has just started (whichever of the two writes comes second sees the other).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from ..deadline import Deadline
from ..errors import HeldForAnotherHandoff, StoreError, WebhookRejected
from ..storage.session_store import SessionStore, conversation_key
from ..webhooks.request import MAX_BODY_BYTES, lower_headers
from .studio import StudioClient

log = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Our handoff ids ("sms-SM...") and conversation ids ("conv_..."), with room for other shapes.
IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


@dataclass(frozen=True)
class ReleaseRequest:
    channel: str
    customer: str
    agent_number: str
    handoff_id: str = ""  # when given (or conversation_id), only that handoff's hold is released
    conversation_id: str = ""

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.channel, self.customer, self.agent_number)


def authenticate(event: Mapping[str, Any], token: str | None) -> None:
    if not token:
        raise WebhookRejected(403, "release is not configured: set HANDOFF_RELEASE_TOKEN in the stack's secret")
    header = lower_headers(event).get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    presented = ""
    if scheme.lower() == "bearer":
        presented = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            presented = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            presented = ""
    if not presented or not hmac.compare_digest(presented.encode(), token.encode()):
        raise WebhookRejected(403, "missing or wrong release token (Authorization: Bearer or Basic)")


def parse(event: Mapping[str, Any]) -> ReleaseRequest:
    """The body is JSON or a form: customer (E.164), agentNumber (E.164), optional channel (sms),
    optional handoffId and conversationId (an empty value counts as absent: a template may render one)."""
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise WebhookRejected(400, "body is not valid base64 UTF-8") from None
    if len(raw) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    content_type = lower_headers(event).get("content-type", "").split(";")[0].strip().lower()
    try:
        fields = (
            json.loads(raw) if content_type == "application/json" else dict(parse_qsl(raw, strict_parsing=bool(raw)))
        )
    except ValueError:
        raise WebhookRejected(400, "body is neither JSON nor a form") from None
    if not isinstance(fields, dict):
        raise WebhookRejected(400, "body must be a JSON object or a form")
    customer, agent = str(fields.get("customer", "")), str(fields.get("agentNumber", ""))
    channel = str(fields.get("channel", "sms")).lower()
    problems = [name for name, value in (("customer", customer), ("agentNumber", agent)) if not E164.match(value)]
    if problems:
        raise WebhookRejected(400, "field(s) must be E.164 phone numbers: " + ", ".join(problems))
    if channel != "sms":
        raise WebhookRejected(400, "channel must be sms (a voice handoff ends with its call)")
    named = {name: fields.get(name) or "" for name in ("handoffId", "conversationId")}
    wrong = [
        name for name, value in named.items() if value and not (isinstance(value, str) and IDENTIFIER.match(value))
    ]
    if wrong:
        raise WebhookRejected(
            400, "field(s) must be ids as the handoff gave them (letters, digits, _ - . :): " + ", ".join(wrong)
        )
    return ReleaseRequest(
        channel=channel,
        customer=customer,
        agent_number=agent,
        handoff_id=named["handoffId"],
        conversation_id=named["conversationId"],
    )


class ReleaseOutcome(NamedTuple):
    released: bool
    handoff_id: str = ""
    execution_sid: str = ""  # the Studio execution the handoff started, "" when it started none
    execution_ended: bool = False
    detail: str = ""
    another_handoff: bool = False  # the request named a handoff; the customer is with a person for another

    def answer(self) -> dict[str, Any]:
        """The release's JSON answer: what was released and what became of the Studio execution."""
        body: dict[str, Any] = {"released": self.released}
        if self.released:
            body["handoffId"] = self.handoff_id
            body["execution"] = (
                {"sid": self.execution_sid, "ended": self.execution_ended, "detail": self.detail}
                if self.execution_sid
                else None
            )
        return body


class Releaser:
    def __init__(
        self, store: SessionStore, studio: StudioClient, *, flow_sid: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._studio = studio
        self._flow_sid = flow_sid
        self._clock = clock

    def release(self, request: ReleaseRequest, *, deadline: Deadline) -> ReleaseOutcome:
        try:
            hold = self._store.release_hold(
                request.conversation_key,
                now=int(self._clock()),
                handoff_id=request.handoff_id,
                conversation_id=request.conversation_id,
            )
        except HeldForAnotherHandoff:
            return ReleaseOutcome(False, another_handoff=True)
        if hold is None:
            return ReleaseOutcome(False)
        record = self._store.get_handoff(hold.handoff_id)
        while record is not None and record.status == "redriven" and record.redriven_as:
            record = self._store.get_handoff(record.redriven_as)  # the copy that delivers it
        if record is None:
            return ReleaseOutcome(True, hold.handoff_id)
        if not record.execution_sid and record.undelivered:
            record, marked = self._store.mark_released(record.handoff_id, now=int(self._clock()))
            if marked or record is None or not record.execution_sid:
                return ReleaseOutcome(True, hold.handoff_id, detail="not delivered yet: it will not be")
        if not record.execution_sid:
            return ReleaseOutcome(True, hold.handoff_id)
        sid = record.execution_sid
        # The hold is released whatever happens next; ending the execution is best effort, and a
        # dispatcher that later meets it still active ends it then (see busy_contact).
        end = self._studio.end_execution(flow_sid=self._flow_sid, execution_sid=sid, deadline=deadline)
        now = int(self._clock())
        try:
            self._store.note_execution_end(record.handoff_id, ended=end.ended, detail=end.detail, now=now)
            if end.ended:
                self._store.mark_execution_ended(
                    flow_sid=self._flow_sid, customer=record.to, agent_number=record.from_, execution_sid=sid, now=now
                )
        except StoreError:
            log.exception("the end of execution %s was not recorded", sid)
        if not end.ended:
            log.warning("execution %s of handoff %s was not ended: %s", sid, hold.handoff_id, end.detail)
        return ReleaseOutcome(True, hold.handoff_id, sid, end.ended, end.detail)
