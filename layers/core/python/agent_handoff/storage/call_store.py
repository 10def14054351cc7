"""Voice call sessions on DynamoDB, in the same table as the SMS conversations.

- `CALL#{CallSid}`   the call: history, the turn counter, the pending handoff, routing facts,
                     and where to post to it (`endpoint`, `connectionId`)
- `CONN#{connId}`    the binding a WebSocket connection presented at `$connect`, and once its
                     `setup` matched it, which call it carries (frames only know the connection)
- `BIND#{hash}`      which connection owns a voice socket binding: the first to present it
- `TRANSCRIPT#{conversationId}`  written with the call's handoff, for its transcript link (transcripts.py)

A call also keeps, per ConversationRelay session that ended (`sessionEnd_{SessionId}`), the first
answer the action callback gave it: a retried callback gets that answer again, and a replayed one
changes nothing. Writes made for an ended session hold only while it is the call's session.

While a call's handoff is `pending` (stored, its `end` not yet posted) the call carries
`promise = "voice_end"` and `promiseDue` (epoch seconds): the sparse PromisesIndex lists what
is overdue. Posting the `end` takes a short lease (`endLeaseOwner`, `endLeaseUntil`, epoch
milliseconds) so one invocation posts at a time, and a dead one's lease runs out.

Each WebSocket frame is its own Lambda invocation and they arrive unordered, so the turn
counter lives here: a prompt claims a turn, an interrupt moves past it, and the prompt's
invocation confirms it before its frames go out (voice/speaker.py: three calls a prompt at
most). An interrupt that runs late, after the caller's next prompt has claimed a turn, belongs
to the answer before that prompt: it rewrites that answer to what was heard and leaves the
counter (and the newer turn) alone.
`historyVersion` moves on with every write of the history, so a turn's reply is added to the
history as it is now, never over an interrupt's change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from ..errors import ConcurrentUpdate
from .dynamo import DynamoTable, TransactionCancelled, history_attribute, history_from, n, plain_item, s
from .records import TranscriptPointer, Turn
from .transcripts import pointer_put

CALL_TTL_SECONDS = 24 * 3600  # calls end within hours; the record outlives them for support
CONNECTION_TTL_SECONDS = 3 * 3600  # API Gateway closes a WebSocket after 2 hours
PROMISES_INDEX = "PromisesIndex"
VOICE_END = "voice_end"
_END_FIELDS = "promise, promiseDue, endLeaseOwner, endLeaseUntil"


def call_key(call_sid: str) -> str:
    return f"CALL#{call_sid}"


def connection_key(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def binding_key(binding_id: str) -> str:
    return f"BIND#{binding_id}"


# Twilio's session ids are "VX" and 32 hex digits; only such an id names an attribute.
_SESSION_ID = re.compile(r"[A-Za-z0-9]{2,64}")


def session_end_attribute(session_id: str) -> str | None:
    """The call item's attribute keeping the first answer to that session's end (None: no such id)."""
    return f"sessionEnd_{session_id}" if _SESSION_ID.fullmatch(session_id) else None


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
    endpoint: str = ""  # the @connections endpoint of `connection_id`: https://{domainName}/{stage}
    binding_nonce: str = ""  # the binding issued with the call's first TwiML, so a retried webhook gets it again
    binding_expires_at: int = 0
    promise_due: int = 0
    history_version: int = 0  # moves on with every write of `history`
    speaking_turn: int = -1  # the last turn known to have started speaking (its first frames confirmed)
    speaking_opening: str = ""  # how that turn's answer opens: what it had said, or was about to, when confirmed


class EndClaim(NamedTuple):
    """Whether this invocation may post the call's `end` now.

    claimed: yes, with `payload`; busy: another invocation holds the lease until `lease_until_ms`;
    not_owed: no pending handoff (none, or its `end` already went out); elsewhere: the call is
    on another connection now.
    """

    status: Literal["claimed", "busy", "not_owed", "elsewhere"]
    payload: str = ""
    lease_until_ms: int = 0


class ConnectionRecord(NamedTuple):
    """What `$connect` proved about a connection (`binding_call_sid`) and what `setup` made of it."""

    call_sid: str = ""  # set once the connection carries the call
    binding_call_sid: str = ""  # the CallSid of the binding the connection presented at `$connect`
    binding_id: str = ""
    refused: str = ""  # why its `setup` was refused: such a connection never carries a call


class SessionAnswer(NamedTuple):
    """The first answer given to a ConversationRelay session's end (the action callback)."""

    twiml: str
    target: str = ""


class StaleSession(ConcurrentUpdate):
    """The action callback names a session that is not the call's current one: nothing was written."""


class SessionAnswered(ConcurrentUpdate):
    """That session's end was answered already (`answer`): nothing was written."""

    def __init__(self, message: str, answer: SessionAnswer) -> None:
        super().__init__(message)
        self.answer = answer


class OverduePromise(NamedTuple):
    call_sid: str
    due: int


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
        if call.binding_nonce:
            item["bindingNonce"] = s(call.binding_nonce)
            item["bindingExpiresAt"] = n(call.binding_expires_at)
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

    def claim_binding(self, *, binding_id: str, call_sid: str, connection_id: str, expires_at: int, now: int) -> bool:
        """`$connect`: the first connection to present a binding owns it; any other is refused (False).

        The same connection presenting it again is still its owner (a retried invocation).
        """
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "pk": s(binding_key(binding_id)),
                                "kind": s("binding"),
                                "callSid": s(call_sid),
                                "connectionId": s(connection_id),
                                # Past its expiry the token itself is refused; the record may go.
                                "expiresAt": n(expires_at),
                            },
                            "ConditionExpression": "attribute_not_exists(pk) OR connectionId = :conn",
                            "ExpressionAttributeValues": {":conn": s(connection_id)},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "pk": s(connection_key(connection_id)),
                                "kind": s("connection"),
                                "binding": s(binding_id),
                                "bindingCallSid": s(call_sid),
                                "expiresAt": n(now + CONNECTION_TTL_SECONDS),
                            },
                            "ConditionExpression": "attribute_not_exists(pk) OR binding = :binding",
                            "ExpressionAttributeValues": {":binding": s(binding_id)},
                        }
                    },
                ],
            )
        except TransactionCancelled as exc:
            if "ConditionalCheckFailed" in exc.reasons:
                return False
            raise
        return True

    def bind_connection(
        self,
        *,
        call_sid: str,
        connection_id: str,
        binding_id: str,
        session_id: str,
        caller: str,
        agent_number: str,
        account_sid: str,
        conversation_id: str,
        endpoint: str,
        now: int,
    ) -> bool:
        """`setup`: tie the connection to its call, if the connection presented this binding for
        this call at `$connect`; otherwise nothing changes (False). A call opened elsewhere is created here."""
        return self._bind(
            call_sid,
            connection_id,
            binding_id=binding_id,
            endpoint=endpoint,
            conversation_id=conversation_id,
            now=now,
            call_set="sessionId = :session, caller = if_not_exists(caller, :caller), "
            "agentNumber = if_not_exists(agentNumber, :agent), accountSid = if_not_exists(accountSid, :account)",
            call_values={":session": session_id, ":caller": caller, ":agent": agent_number, ":account": account_sid},
        )

    def _bind(
        self,
        call_sid: str,
        connection_id: str,
        *,
        binding_id: str,
        endpoint: str,
        conversation_id: str,
        now: int,
        call_set: str = "",
        call_values: dict[str, Any] | None = None,
        call_remove: str = "",
        call_condition: str | None = None,
        connection_condition: str = "",
    ) -> bool:
        """In one transaction: the call record opened (or reopened) on the connection, and the
        connection tied to the call, only if it presented this call's binding at `$connect`
        (False, nothing changed, when a condition fails). `call_set`, `call_remove`: what else the
        call's update sets and removes; `connection_condition`: more the connection must meet."""
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Update": self._request(
                            call_key(call_sid),
                            update=_CALL_OPENED
                            + (f", {call_set}" if call_set else "")
                            + (f" REMOVE {call_remove}" if call_remove else ""),
                            condition=call_condition,
                            values={
                                ":kind": "call",
                                ":sid": call_sid,
                                ":conn": connection_id,
                                ":endpoint": endpoint,
                                ":connected": "connected",
                                ":conv": conversation_id,
                                ":zero": 0,
                                ":empty": {"L": []},
                                ":expires": now + CALL_TTL_SECONDS,
                                **(call_values or {}),
                            },
                        )
                    },
                    {
                        "Update": self._request(
                            connection_key(connection_id),
                            update="SET callSid = :sid",
                            condition="#binding = :binding AND bindingCallSid = :sid"
                            + (f" AND {connection_condition}" if connection_condition else ""),
                            values={":sid": call_sid, ":binding": binding_id},
                        )
                    },
                ],
            )
        except TransactionCancelled as exc:
            if "ConditionalCheckFailed" in exc.reasons:
                return False
            raise
        return True

    def call_for_connection(self, connection_id: str) -> str | None:
        item = self._get(connection_key(connection_id))
        return item.get("callSid") if item else None

    def connection(self, connection_id: str) -> ConnectionRecord | None:
        item = self._get(connection_key(connection_id))
        if not item:
            return None
        return ConnectionRecord(
            call_sid=item.get("callSid", ""),
            binding_call_sid=item.get("bindingCallSid", ""),
            binding_id=item.get("binding", ""),
            refused=item.get("refused", ""),
        )

    def bind_lazily(
        self, *, connection: str, proved: ConnectionRecord, endpoint: str, conversation_id: str, now: int
    ) -> bool:
        """Tie a connection whose `setup` never landed to the call its `$connect` binding proved.

        Only that call, only while the call has no socket (a failed session's is removed when it
        reconnects), and only if no `setup` has bound or refused the connection since (False
        otherwise, nothing changed). What only `setup` knows is filled as safely as it can be:
        the caller's details are kept from the call's record, and the session id is removed, so
        no action callback is judged against a session this socket does not carry.
        """
        return self._bind(
            proved.binding_call_sid,
            connection,
            binding_id=proved.binding_id,
            endpoint=endpoint,
            conversation_id=conversation_id,
            now=now,
            call_remove="sessionId",
            call_condition="attribute_not_exists(connectionId) OR connectionId = :conn",
            connection_condition="attribute_not_exists(callSid) AND attribute_not_exists(refused)",
        )

    def refuse_connection(self, connection_id: str, reason: str) -> None:
        """A refused `setup`: the connection may never carry a call, not even through `bind_lazily`."""
        try:
            self._update(
                connection_key(connection_id),
                "SET refused = :reason",
                condition="attribute_exists(pk)",
                values={":reason": reason},
            )
        except ConcurrentUpdate:
            pass  # no `$connect` record: there is nothing a later frame could bind through

    def start_turn(self, call_sid: str, connection_id: str, user_text: str) -> CallSession:
        """Claim the next turn and record what the caller said, in one write."""
        response = self._update(
            call_key(call_sid),
            "SET #turn = #turn + :one, history = list_append(history, :said), "
            "historyVersion = if_not_exists(historyVersion, :zero) + :one",
            condition="connectionId = :conn",
            values={
                ":one": 1,
                ":zero": 0,
                ":said": history_attribute([Turn("user", user_text)]),
                ":conn": connection_id,
            },
            ReturnValues="ALL_NEW",
        )
        return _call_from(plain_item(response["Attributes"]))

    def confirm_speaking(self, call_sid: str, turn: int, opening: str) -> bool:
        """Whether `turn` is still current; if so it is marked as speaking `opening`, in the same one call.

        The mark is how an interrupt tells this turn's answer from a late interrupt of the one
        before, even when both open alike (see `record_interrupt`)."""
        try:
            self._update(
                call_key(call_sid),
                "SET speakingTurn = :turn, speakingOpening = :opening",
                condition="#turn = :turn",
                values={":turn": turn, ":opening": opening[:OPENING_CHARS]},
            )
        except ConcurrentUpdate:
            return False
        return True

    def _write_history(
        self,
        call_sid: str,
        history: Sequence[Turn],
        *,
        seen_version: int,
        also_set: str = "",
        also_condition: str = "",
        values: dict[str, Any] | None = None,
        **request: Any,
    ) -> dict[str, Any]:
        """Every rewrite of a call's history: only if it is still as it was read (`seen_version`), and
        moving the version on, so writers that read the same history never lose each other's change."""
        update = ", ".join(
            part
            for part in ("history = :history", also_set, "historyVersion = if_not_exists(historyVersion, :zero) + :one")
            if part
        )
        return self._update(
            call_key(call_sid),
            f"SET {update}",
            condition=f"{also_condition} AND {_HISTORY_UNCHANGED}" if also_condition else _HISTORY_UNCHANGED,
            values={
                ":history": history_attribute(history),
                ":seen": seen_version,
                ":zero": 0,
                ":one": 1,
                **(values or {}),
            },
            **request,
        )

    def finish_turn(
        self, call: CallSession, reply: Turn, *, unresolved_attempts: int, history_limit: int, attempts: int = 3
    ) -> bool:
        """Add the turn's reply to the history unless an interrupt moved past the turn (it then
        recorded what was heard). `call`: as its turn was claimed. A late interrupt of an earlier
        answer may have rewritten the history meanwhile: the reply is then added to it as it is now."""
        seen = call
        for _ in range(attempts):
            history = (*seen.history, reply)[-history_limit:]
            try:
                self._write_history(
                    call.call_sid,
                    history,
                    seen_version=seen.history_version,
                    also_set="unresolvedAttempts = :attempts, speakingTurn = :turn",
                    also_condition="#turn = :turn",
                    values={":attempts": unresolved_attempts, ":turn": call.turn},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ConcurrentUpdate as exc:
                current = _call_from(plain_item(exc.existing)) if exc.existing else self.get_call(call.call_sid)
                if current is None or current.turn != call.turn:
                    return False
                seen = current
                continue
            return True
        return False

    def keep_only_said(self, call: CallSession, reply: str, said: str, *, history_limit: int) -> bool:
        """The turn's stored reply cut to what went out (`said`, marked interrupted; dropped when
        nothing did): for a closing write whose last frame then failed. Found by its text, even
        after the caller's next prompt; an interrupt that rewrote it already recorded what was heard."""
        for _ in range(3):
            current = self.get_call(call.call_sid)
            if current is None:
                return False
            history = list(current.history)
            at = next(
                (i for i in range(len(history) - 1, -1, -1) if history[i] == Turn("assistant", reply)),
                None,
            )
            if at is None:
                return False
            if said.strip():
                history[at] = Turn("assistant", said.strip(), interrupted=True)
            else:
                del history[at]
            try:
                self._write_history(call.call_sid, history[-history_limit:], seen_version=current.history_version)
            except ConcurrentUpdate:
                continue
            return True
        return False

    def record_interrupt(
        self, call_sid: str, heard: str, *, history_limit: int, call: CallSession | None = None, greeting: str = ""
    ) -> int | None:
        """Keep only what the caller heard of the answer they talked over; the turn counter after it.

        The answer is the current turn's (the last, or the one still being spoken after the last
        prompt): the counter moves past it, so its invocation stops posting. An interrupt that ran
        late, after the caller's next prompt claimed a turn, is for the answer before that prompt
        when `heard` is how that answer starts: it is rewritten and the counter, with the newer
        turn, is left alone; so is one of the welcome `greeting` (never stored), when the caller
        has not been answered yet. `call`: the call as just read, which saves the first read.
        """
        for _ in range(3):
            call = call or self.get_call(call_sid)
            if call is None:
                return None
            history = list(call.history)
            earlier = _earlier_answer(history, heard)
            speaking_unstored = call.speaking_turn == call.turn and bool(history) and history[-1].role == "user"
            if speaking_unstored and _agrees(call.speaking_opening, heard):
                earlier = None  # the current turn is speaking words that open so: the interrupt is its own
            elif earlier is None and not _stored_answer_before_prompt(history) and _starts_with(greeting, heard):
                return call.turn  # an interrupt of the welcome greeting, which is not in the history
            if earlier is not None:
                history[earlier] = Turn("assistant", heard, interrupted=True)
                moves_turn, turn_after = "", call.turn
            else:
                if history and history[-1].role == "assistant":
                    history[-1] = Turn("assistant", heard, interrupted=True)
                elif heard:
                    history.append(Turn("assistant", heard, interrupted=True))
                moves_turn, turn_after = "#turn = #turn + :one", call.turn + 1
            try:
                self._write_history(
                    call_sid,
                    history[-history_limit:],
                    seen_version=call.history_version,
                    also_set=moves_turn,
                    also_condition="#turn = :turn",
                    values={":turn": call.turn},
                )
            except ConcurrentUpdate:
                call = None
                continue
            return turn_after
        return None

    def store_handoff(
        self,
        call_sid: str,
        *,
        payload_json: str,
        reason: str,
        due: int,
        transcript: TranscriptPointer | None = None,
    ) -> bool:
        """The voice handoff tool: keep the payload for the `end` message, owed by `due`. First decision wins.

        With `transcript`, its link's pointer is written in the same transaction, or not at all."""
        update = self._request(
            call_key(call_sid),
            update="SET handoffPayload = :payload, handoffState = :pending, handoffReason = :reason, "
            "promise = :promise, promiseDue = :due",
            condition="attribute_exists(pk) AND attribute_not_exists(handoffState)",
            values={
                ":payload": payload_json,
                ":pending": "pending",
                ":reason": reason,
                ":promise": VOICE_END,
                ":due": due,
            },
        )
        if transcript is None:
            try:
                self._call("update_item", **update)
            except ConcurrentUpdate:
                return False
            return True
        return self._transact_or_refused(update, transcript)

    def _transact_or_refused(self, update: dict[str, Any], transcript: TranscriptPointer) -> bool:
        """The call's update and the transcript pointer together; False if the update's condition failed."""
        try:
            self._call(
                "transact_write_items",
                TransactItems=[{"Update": update}, {"Put": pointer_put(self._table, transcript)}],
            )
        except TransactionCancelled as exc:
            if exc.reasons and exc.reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    def claim_end(self, call_sid: str, *, connection_id: str, owner: str, now_ms: int, lease_ms: int) -> EndClaim:
        """Take the lease to post the pending handoff's `end` to `connection_id`."""
        try:
            response = self._update(
                call_key(call_sid),
                "SET endLeaseOwner = :owner, endLeaseUntil = :until",
                condition="handoffState = :pending AND connectionId = :conn AND "
                "(attribute_not_exists(endLeaseUntil) OR endLeaseUntil <= :now OR endLeaseOwner = :owner)",
                values={
                    ":owner": owner,
                    ":until": now_ms + lease_ms,
                    ":pending": "pending",
                    ":conn": connection_id,
                    ":now": now_ms,
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            item = plain_item(exc.existing) if exc.existing else (self._get(call_key(call_sid)) or {})
            if item.get("handoffState") != "pending":
                return EndClaim("not_owed")
            if item.get("connectionId") != connection_id:
                return EndClaim("elsewhere")
            return EndClaim("busy", lease_until_ms=int(item.get("endLeaseUntil", 0)))
        return EndClaim("claimed", payload=plain_item(response["Attributes"]).get("handoffPayload", ""))

    def end_sent(self, call_sid: str, *, owner: str) -> bool:
        """The `end` this owner posted went out: the promise is kept. False if the lease had passed on."""
        try:
            self._update(
                call_key(call_sid),
                f"SET handoffState = :sent REMOVE {_END_FIELDS}",
                condition="handoffState = :pending AND endLeaseOwner = :owner",
                values={":sent": "end_sent", ":pending": "pending", ":owner": owner},
            )
        except ConcurrentUpdate:
            return False
        return True

    def release_end(self, call_sid: str, *, owner: str, socket_gone: bool) -> None:
        """The post failed: give the lease back. A gone socket also drops the promise, since
        the action callback now routes the call with the stored handoff."""
        remove = _END_FIELDS if socket_gone else "endLeaseOwner, endLeaseUntil"
        try:
            self._update(
                call_key(call_sid),
                f"REMOVE {remove}",
                condition="endLeaseOwner = :owner",
                values={":owner": owner},
            )
        except ConcurrentUpdate:
            pass  # the lease had already passed to another invocation

    def overdue_voice_ends(self, *, now: int, limit: int = 100) -> list[OverduePromise]:
        """Calls whose `end` should have gone out before `now`, oldest first (PromisesIndex)."""
        found: list[OverduePromise] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": PROMISES_INDEX,
            "KeyConditionExpression": "promise = :promise AND promiseDue < :now",
            "ExpressionAttributeValues": {":promise": s(VOICE_END), ":now": n(now)},
            "Limit": limit,
        }
        while len(found) < limit:
            response = self._call("query", **request)
            for item in response.get("Items", []):
                plain = plain_item(item)
                found.append(OverduePromise(plain["pk"].removeprefix("CALL#"), int(plain["promiseDue"])))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    def call_and_answer(self, call_sid: str, session_id: str) -> tuple[CallSession | None, SessionAnswer | None]:
        """The call, and the answer already given to that session's end if any, in one read."""
        item = self._get(call_key(call_sid))
        if not item:
            return None, None
        attribute = session_end_attribute(session_id)
        kept = item.get(attribute) if attribute else None
        answer = SessionAnswer(kept.get("twiml", ""), kept.get("target", "")) if isinstance(kept, dict) else None
        return _call_from(item), answer

    def mark_routed(
        self,
        call_sid: str,
        *,
        payload_json: str,
        target: str,
        now: int,
        transcript: TranscriptPointer | None = None,
        session_id: str = "",
        answer: SessionAnswer | None = None,
    ) -> None:
        """The call went to a person; `transcript`: the pointer of a payload built here, written with it.

        `session_id`: the ended session this answers (StaleSession if the call has moved on to
        another one); `answer`: kept for it (SessionAnswered if one was kept first)."""
        update = (
            "SET handoffState = :routed, handoffPayload = :payload, routedTo = :target, "
            f"routedAt = :now, #status = :status REMOVE {_END_FIELDS}"
        )
        values = {
            ":routed": "routed",
            ":payload": payload_json,
            ":target": target,
            ":now": now,
            ":status": "handed_off",
        }
        if transcript is None:
            self._session_update(call_sid, session_id, answer, update, values=values)
            return
        request, attribute = self._session_request(call_sid, session_id, answer, update, values)
        if not self._transact_or_refused(request, transcript):
            raise self._session_refusal(call_sid, session_id, attribute, None)

    def count_reconnect(self, call_sid: str, *, session_id: str = "") -> int:
        """One more reconnect for the call, after `session_id` failed (StaleSession if that is not the
        current session, SessionAnswered if its end was answered). The session and its socket go:
        the new socket's `setup` brings the next ones."""
        response = self._session_update(
            call_sid,
            session_id,
            None,
            "SET reconnects = if_not_exists(reconnects, :zero) + :one"
            + (" REMOVE sessionId, connectionId" if session_id else ""),
            values={":zero": 0, ":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(plain_item(response["Attributes"])["reconnects"])

    def keep_session_answer(self, call_sid: str, session_id: str, answer: SessionAnswer) -> None:
        """Keep the answer to that session's end (SessionAnswered if one was kept first)."""
        if session_end_attribute(session_id):
            # `callSid` is written as it is, which also keeps this from creating an item for an unknown call.
            self._session_update(
                call_sid, session_id, answer, "SET callSid = :sid", values={":sid": call_sid}, existing=True
            )

    def close_call(self, call_sid: str, *, status: str, now: int, session_id: str = "") -> None:
        """The call is over (StaleSession if `session_id` is not its current session); answered or not."""
        self._session_update(
            call_sid,
            session_id,
            None,
            f"SET #status = :status, endedAt = :now REMOVE connectionId, {_END_FIELDS}",
            values={":status": status, ":now": now},
            once=False,
        )

    def _session_update(
        self,
        call_sid: str,
        session_id: str,
        answer: SessionAnswer | None,
        update: str,
        *,
        values: dict[str, Any],
        existing: bool = False,
        once: bool = True,
        **request: Any,
    ) -> dict[str, Any]:
        """UpdateItem on behalf of an ended session (see `_session_request`)."""
        shaped, attribute = self._session_request(
            call_sid, session_id, answer, update, values, existing=existing, once=once
        )
        if "ConditionExpression" in shaped:
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            return self._call("update_item", **shaped, **request)
        except ConcurrentUpdate as exc:
            raise self._session_refusal(call_sid, session_id, attribute, exc.existing) from None

    def _session_request(
        self,
        call_sid: str,
        session_id: str,
        answer: SessionAnswer | None,
        update: str,
        values: dict[str, Any],
        *,
        existing: bool = False,
        once: bool = True,
    ) -> tuple[dict[str, Any], str | None]:
        """The call's update on behalf of an ended session, and the attribute keeping that session's answer.

        It holds only while that session is the call's or the call's session is not known (a socket
        bound without its `setup`, or between a reconnect and its `setup`), and only if that
        session's end has no answer yet (unless not `once`); with `answer`, it keeps it. `existing`:
        only if the call's item exists. Without a session id, the update holds unconditionally."""
        if not session_id:
            return self._request(call_key(call_sid), update=update, values=values), None
        attribute = session_end_attribute(session_id)
        conditions = ["(attribute_not_exists(sessionId) OR sessionId = :session)"]
        if existing:
            conditions.append("attribute_exists(pk)")
        values = {**values, ":session": session_id}
        if attribute and once:
            conditions.append(f"attribute_not_exists(#{attribute})")
            if answer is not None:
                update = update.replace("SET ", f"SET #{attribute} = :answer, ", 1)
                values[":answer"] = {"M": {"twiml": s(answer.twiml), "target": s(answer.target)}}
        request = self._request(call_key(call_sid), update=update, condition=" AND ".join(conditions), values=values)
        return request, attribute

    def _session_refusal(
        self, call_sid: str, session_id: str, attribute: str | None, existing: dict[str, Any] | None
    ) -> ConcurrentUpdate:
        """Why an update for an ended session did not hold: its end was answered, or it is stale."""
        old = plain_item(existing) if existing else (self._get(call_key(call_sid)) or {})
        kept = old.get(attribute) if attribute else None
        if isinstance(kept, dict):
            return SessionAnswered(
                f"session {session_id} of call {call_sid} was answered already",
                SessionAnswer(kept.get("twiml", ""), kept.get("target", "")),
            )
        return StaleSession(f"session {session_id} is not the current session of call {call_sid}")

    def forget_end_promise(self, call_sid: str) -> bool:
        """Drop a `voice_end` promise nobody can keep by posting: the handoff is no longer pending,
        or the call has no socket (the action callback routes it). Checked again as it is written."""
        try:
            self._update(
                call_key(call_sid),
                f"REMOVE {_END_FIELDS}",
                condition="attribute_exists(pk) AND (handoffState <> :pending OR attribute_not_exists(connectionId) "
                "OR attribute_not_exists(endpoint))",
                values={":pending": "pending"},
            )
        except ConcurrentUpdate:
            return False
        return True


# What opening a call on a connection sets, by `setup` or by a lazy bind: the rest is kept if present.
_CALL_OPENED = (
    "SET kind = :kind, callSid = :sid, connectionId = :conn, endpoint = :endpoint, #status = :connected, "
    "conversationId = if_not_exists(conversationId, :conv), #turn = if_not_exists(#turn, :zero), "
    "history = if_not_exists(history, :empty), reconnects = if_not_exists(reconnects, :zero), "
    "unresolvedAttempts = if_not_exists(unresolvedAttempts, :zero), expiresAt = :expires"
)
# The history as it was read: items written before historyVersion existed have none.
_HISTORY_UNCHANGED = "(attribute_not_exists(historyVersion) OR historyVersion = :seen)"
_WORDS = re.compile(r"\w+")
# How much of a speaking turn's opening is kept: enough words to tell two answers apart.
OPENING_CHARS = 200


def _earlier_answer(history: list[Turn], heard: str) -> int | None:
    """Where the answer an interrupt that ran late was for: the last answer before the caller's
    newest prompt, when `heard` is how it starts; None when the interrupt is the current turn's.

    The current turn's own answer, when it is already stored, wins: the interrupt is then not late.
    """
    if history and history[-1].role == "assistant" and _starts_with(history[-1].text, heard):
        return None
    prompts = [index for index, turn in enumerate(history) if turn.role == "user"]
    if not prompts:
        return None
    before = next((i for i in range(prompts[-1] - 1, -1, -1) if history[i].role == "assistant"), None)
    if before is None or not _starts_with(history[before].text, heard):
        return None
    return before


def _agrees(opening: str, heard: str) -> bool:
    """`heard` and `opening` are the same words as far as the shorter goes (either may be cut)."""
    return _starts_with(opening, heard) or _starts_with(heard, opening)


def _stored_answer_before_prompt(history: list[Turn]) -> bool:
    """An answer is stored before the caller's newest prompt (so the greeting is not the answer before it)."""
    prompts = [index for index, turn in enumerate(history) if turn.role == "user"]
    return bool(prompts) and any(turn.role == "assistant" for turn in history[: prompts[-1]])


def _starts_with(said: str, heard: str) -> bool:
    """`heard` is how `said` starts, word by word (case and punctuation aside; the last word may be cut)."""
    heard_words, said_words = _WORDS.findall(heard.casefold()), _WORDS.findall(said.casefold())
    if not heard_words or len(heard_words) > len(said_words):
        return False
    *whole, last = heard_words
    return said_words[: len(whole)] == whole and said_words[len(whole)].startswith(last)


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
        endpoint=item.get("endpoint", ""),
        binding_nonce=item.get("bindingNonce", ""),
        binding_expires_at=int(item.get("bindingExpiresAt", 0)),
        promise_due=int(item.get("promiseDue", 0)),
        history_version=int(item.get("historyVersion", 0)),
        speaking_turn=int(item.get("speakingTurn", -1)),
        speaking_opening=item.get("speakingOpening", ""),
    )
