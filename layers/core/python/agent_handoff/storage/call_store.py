"""Voice call sessions on DynamoDB, in the same table as the SMS conversations.

- `CALL#{CallSid}`   the call: history, the turn counter, the pending handoff, routing facts
- `CONN#{connId}`    which call a WebSocket connection carries (frames only know the connection)

Each WebSocket frame is its own Lambda invocation and they arrive unordered, so the turn
counter lives here: a prompt claims a turn, an interrupt moves past it, and the prompt's
invocation checks it before every frame it posts.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import ConcurrentUpdate
from .dynamo import DynamoTable, history_attribute, history_from, n, plain_item, s
from .records import Turn

CALL_TTL_SECONDS = 24 * 3600  # calls end within hours; the record outlives them for support
CONNECTION_TTL_SECONDS = 3 * 3600  # API Gateway closes a WebSocket after 2 hours


def call_key(call_sid: str) -> str:
    return f"CALL#{call_sid}"


def connection_key(connection_id: str) -> str:
    return f"CONN#{connection_id}"


class CallSession(NamedTuple):
    call_sid: str
    conversation_id: str
    caller: str = ""
    agent_number: str = ""
    account_sid: str = ""
    return_flow_sid: str = ""
    connection_id: str = ""
    session_id: str = ""
    status: str = "ringing"
    turn: int = 0
    history: tuple[Turn, ...] = ()
    unresolved_attempts: int = 0
    handoff_payload: str = ""
    handoff_state: str = ""  # "" | pending | end_sent | routed
    handoff_reason: str = ""
    reconnects: int = 0


class CallStore(DynamoTable):
    def open_call(self, call: CallSession, *, now: int) -> tuple[CallSession, bool]:
        """Create the call's session; a retried /voice webhook finds it and gets the same answer."""
        item = {
            "pk": s(call_key(call.call_sid)),
            "kind": s("call"),
            "callSid": s(call.call_sid),
            "conversationId": s(call.conversation_id),
            "caller": s(call.caller),
            "agentNumber": s(call.agent_number),
            "accountSid": s(call.account_sid),
            "returnFlowSid": s(call.return_flow_sid),
            "status": s("ringing"),
            "turn": n(0),
            "history": {"L": []},
            "unresolvedAttempts": n(0),
            "reconnects": n(0),
            "createdAt": n(now),
            "expiresAt": n(now + CALL_TTL_SECONDS),
        }
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            existing = _call_from(plain_item(exc.existing)) if exc.existing else self.get_call(call.call_sid)
            return existing or call, False
        return call, True

    def get_call(self, call_sid: str) -> CallSession | None:
        item = self._get(call_key(call_sid))
        return _call_from(item) if item else None

    def bind_connection(
        self,
        *,
        call_sid: str,
        connection_id: str,
        session_id: str,
        caller: str,
        agent_number: str,
        account_sid: str,
        conversation_id: str,
        now: int,
    ) -> None:
        """Tie a WebSocket connection to its call (setup). A call opened elsewhere is created here."""
        self._call(
            "transact_write_items",
            TransactItems=[
                {
                    "Update": self._request(
                        call_key(call_sid),
                        update="SET kind = :kind, callSid = :sid, connectionId = :conn, sessionId = :session, "
                        "#status = :connected, conversationId = if_not_exists(conversationId, :conv), "
                        "caller = if_not_exists(caller, :caller), agentNumber = if_not_exists(agentNumber, :agent), "
                        "accountSid = if_not_exists(accountSid, :account), #turn = if_not_exists(#turn, :zero), "
                        "history = if_not_exists(history, :empty), reconnects = if_not_exists(reconnects, :zero), "
                        "unresolvedAttempts = if_not_exists(unresolvedAttempts, :zero), "
                        "expiresAt = :expires",
                        values={
                            ":kind": "call",
                            ":sid": call_sid,
                            ":conn": connection_id,
                            ":session": session_id,
                            ":connected": "connected",
                            ":conv": conversation_id,
                            ":caller": caller,
                            ":agent": agent_number,
                            ":account": account_sid,
                            ":zero": 0,
                            ":empty": {"L": []},
                            ":expires": now + CALL_TTL_SECONDS,
                        },
                    )
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "pk": s(connection_key(connection_id)),
                            "kind": s("connection"),
                            "callSid": s(call_sid),
                            "expiresAt": n(now + CONNECTION_TTL_SECONDS),
                        },
                    }
                },
            ],
        )

    def call_for_connection(self, connection_id: str) -> str | None:
        item = self._get(connection_key(connection_id))
        return item.get("callSid") if item else None

    def start_turn(self, call_sid: str, connection_id: str, user_text: str) -> CallSession:
        """Claim the next turn and record what the caller said, in one write."""
        response = self._update(
            call_key(call_sid),
            "SET #turn = #turn + :one, history = list_append(history, :said)",
            condition="connectionId = :conn",
            values={":one": 1, ":said": history_attribute([Turn("user", user_text)]), ":conn": connection_id},
            ReturnValues="ALL_NEW",
        )
        return _call_from(plain_item(response["Attributes"]))

    def current_turn(self, call_sid: str) -> int:
        response = self._call("get_item", **self._request(call_key(call_sid), projection="#turn"), ConsistentRead=True)
        return int((response.get("Item") or {}).get("turn", {}).get("N", -1))

    def finish_turn(self, call_sid: str, *, turn: int, history: tuple[Turn, ...], unresolved_attempts: int) -> bool:
        """Store the turn's history unless an interrupt moved past it (it then recorded what was heard)."""
        try:
            self._update(
                call_key(call_sid),
                "SET history = :history, unresolvedAttempts = :attempts",
                condition="#turn = :turn",
                values={":history": history_attribute(history), ":attempts": unresolved_attempts, ":turn": turn},
            )
        except ConcurrentUpdate:
            return False
        return True

    def record_interrupt(self, call_sid: str, heard: str, *, history_limit: int) -> int | None:
        """Move past the current turn and keep only what the caller actually heard of it."""
        for _ in range(3):
            call = self.get_call(call_sid)
            if call is None:
                return None
            history = list(call.history)
            if history and history[-1].role == "assistant":
                history[-1] = Turn("assistant", heard)
            elif heard:
                history.append(Turn("assistant", heard))
            try:
                self._update(
                    call_key(call_sid),
                    "SET #turn = #turn + :one, history = :history",
                    condition="#turn = :turn",
                    values={":one": 1, ":turn": call.turn, ":history": history_attribute(history[-history_limit:])},
                )
            except ConcurrentUpdate:
                continue
            return call.turn + 1
        return None

    def store_handoff(self, call_sid: str, *, payload_json: str, reason: str) -> bool:
        """The voice handoff tool: keep the payload for the `end` message. First decision wins."""
        try:
            self._update(
                call_key(call_sid),
                "SET handoffPayload = :payload, handoffState = :pending, handoffReason = :reason",
                condition="attribute_exists(pk) AND attribute_not_exists(handoffState)",
                values={":payload": payload_json, ":pending": "pending", ":reason": reason},
            )
        except ConcurrentUpdate:
            return False
        return True

    def take_handoff_for_end(self, call_sid: str) -> str | None:
        """Move a pending handoff to end_sent and return its payload: exactly one `end` per handoff."""
        try:
            response = self._update(
                call_key(call_sid),
                "SET handoffState = :sent",
                condition="handoffState = :pending",
                values={":sent": "end_sent", ":pending": "pending"},
                ReturnValues="ALL_NEW",
            )
        except ConcurrentUpdate:
            return None
        return plain_item(response["Attributes"]).get("handoffPayload")

    def mark_routed(self, call_sid: str, *, payload_json: str, target: str, now: int) -> None:
        self._update(
            call_key(call_sid),
            "SET handoffState = :routed, handoffPayload = :payload, routedTo = :target, "
            "routedAt = :now, #status = :status",
            values={
                ":routed": "routed",
                ":payload": payload_json,
                ":target": target,
                ":now": now,
                ":status": "handed_off",
            },
        )

    def count_reconnect(self, call_sid: str) -> int:
        response = self._update(
            call_key(call_sid),
            "SET reconnects = if_not_exists(reconnects, :zero) + :one",
            values={":zero": 0, ":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(plain_item(response["Attributes"])["reconnects"])

    def close_call(self, call_sid: str, *, status: str, now: int) -> None:
        self._update(
            call_key(call_sid),
            "SET #status = :status, endedAt = :now REMOVE connectionId",
            values={":status": status, ":now": now},
        )


def _call_from(item: dict[str, Any]) -> CallSession:
    return CallSession(
        call_sid=item.get("callSid", ""),
        conversation_id=item.get("conversationId", ""),
        caller=item.get("caller", ""),
        agent_number=item.get("agentNumber", ""),
        account_sid=item.get("accountSid", ""),
        return_flow_sid=item.get("returnFlowSid", ""),
        connection_id=item.get("connectionId", ""),
        session_id=item.get("sessionId", ""),
        status=item.get("status", ""),
        turn=int(item.get("turn", 0)),
        history=history_from(item.get("history", [])),
        unresolved_attempts=int(item.get("unresolvedAttempts", 0)),
        handoff_payload=item.get("handoffPayload", ""),
        handoff_state=item.get("handoffState", ""),
        handoff_reason=item.get("handoffReason", ""),
        reconnects=int(item.get("reconnects", 0)),
    )
