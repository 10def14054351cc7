"""The human side of `make local`: an agent desk at /desk that plays the person who takes over.

It lists handoffs as the human side received them: SMS ones from the Studio recorder (what the
Executions API was given), voice ones from the calls the action callback routed to a person.
Each shows the reason, the summary, the channel, the customer (masked) and the time; it opens the
transcript through the payload's own signed link, and an SMS handoff has a Release button that
calls the real POST /handoff/release with this session's HANDOFF_RELEASE_TOKEN, so the AI answers
that customer again. The page polls /desk/handoffs every second: plain HTML, CSS and a little
JavaScript from desk_static/, no build step.

Like the simulators' other views, the desk is for this machine only: the gateway refuses it to
a tunnel's visitors (it shows customers' numbers to the page's script and embeds the token).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web

STATIC = Path(__file__).with_name("desk_static")
PAGE_PATH = "/desk"
DATA_PATH = "/desk/handoffs"
POLL_MS = 1000
# The desk loads its own script and stylesheet and talks to this gateway; it opens transcript links by navigation.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Desk:
    def __init__(self, *, executions: Callable[[], list[Any]], table: str, release_token: str, dynamodb: Any) -> None:
        """`executions`: the Studio recorder's requests; `dynamodb`: a client of the stack's AWS."""
        self._executions = executions
        self._table = table
        self._release_token = release_token
        self._dynamodb = dynamodb

    def routes(self) -> dict[str, Callable[[], Any]]:
        return {
            PAGE_PATH: self.page,
            f"{PAGE_PATH}/desk.js": lambda: _static("desk.js", "text/javascript"),
            f"{PAGE_PATH}/desk.css": lambda: _static("desk.css", "text/css"),
            DATA_PATH: self.handoffs,
        }

    def page(self) -> web.Response:
        html = (STATIC / "desk.html").read_text()
        html = html.replace("{{release_token}}", escape(self._release_token, quote=True))
        html = html.replace("{{poll_ms}}", str(POLL_MS))
        return web.Response(text=html, content_type="text/html", headers=_headers())

    def handoffs(self) -> dict[str, Any]:
        rows = self._sms_handoffs() + self._voice_handoffs()
        rows.sort(key=lambda row: row["at"], reverse=True)
        return {"handoffs": rows, "now": time.time()}

    # -- where handoffs come from --------------------------------------------------------

    def _sms_handoffs(self) -> list[dict[str, Any]]:
        from agent_handoff.masking import mask_phone
        from agent_handoff.storage.session_store import conversation_key

        rows = []
        for execution in self._executions():
            if execution.status != 201:
                continue  # Studio started nothing (409: the contact already had an execution)
            try:
                data = json.loads(execution.parameters)["HandoffData"]
            except (ValueError, KeyError, TypeError):
                continue
            attributes = data.get("attributes") or {}
            conversation = self._item(conversation_key("SMS", execution.to, execution.from_))
            rows.append(
                {
                    "id": execution.sid,
                    "channel": "sms",
                    "customer": mask_phone(execution.to),
                    "at": execution.at,
                    "reason": str(attributes.get("reason", "")),
                    "summary": str(attributes.get("summary", "")),
                    "transcriptUrl": str(attributes.get("transcriptUrl", "")),
                    "conversationId": data.get("conversationId", ""),
                    "status": _sms_status(conversation, data.get("conversationId", "")),
                    # What POST /handoff/release names: the customer's number, and this handoff's conversation,
                    # so a late click (a stale row, a retry) cannot release the customer's next handoff.
                    "release": {
                        "customer": execution.to,
                        "agentNumber": execution.from_,
                        "conversationId": data.get("conversationId", ""),
                    },
                }
            )
        return rows

    def _voice_handoffs(self) -> list[dict[str, Any]]:
        from agent_handoff.masking import mask_phone
        from agent_handoff.storage.dynamo import plain_item

        pages = self._dynamodb.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression="kind = :call AND handoffState = :routed",
            ExpressionAttributeValues={":call": {"S": "call"}, ":routed": {"S": "routed"}},
        )
        rows = []
        for item in (plain_item(raw) for page in pages for raw in page["Items"]):
            try:
                data = json.loads(item.get("handoffPayload") or "{}")
            except ValueError:
                data = {}
            attributes = data.get("attributes") or {}
            rows.append(
                {
                    "id": item["callSid"],
                    "channel": "voice",
                    "customer": mask_phone(item.get("caller", "")),
                    "at": item.get("routedAt", 0),
                    "reason": str(attributes.get("reason", "")),
                    "summary": str(attributes.get("summary", "")),
                    "transcriptUrl": str(attributes.get("transcriptUrl", "")),
                    "conversationId": data.get("conversationId", ""),
                    "status": "call_with_person",
                    "release": None,  # the live call left the AI; nothing to give back
                }
            )
        return rows

    def _item(self, key: str) -> dict[str, Any] | None:
        from agent_handoff.storage.dynamo import plain_item

        item = self._dynamodb.get_item(TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")
        return plain_item(item) if item else None


def _sms_status(conversation: dict[str, Any] | None, conversation_id: str) -> str:
    """with_person while the hold lasts; released once it ended (or the conversation started again)."""
    if conversation is None:
        return "expired"
    hold = conversation.get("hold")
    if conversation.get("conversationId") == conversation_id and hold and hold.get("until", 0) > time.time():
        return "with_person"
    return "released"


def _static(name: str, content_type: str) -> web.Response:
    return web.Response(text=(STATIC / name).read_text(), content_type=content_type, headers=_headers())


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": POLICY, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
