"""SMS sessions on DynamoDB: conversations, webhook claims and handoff records.

One table, one string key `pk`, items told apart by `kind`:

- `CONV#...`      a conversation: history, escalation counters, the handoff hold, `version`
- `MSG#{sid}`     a webhook claim and its reply, for deduplication of Twilio retries
- `HANDOFF#{id}`  a handoff record; its INSERT on the table's stream is the dispatch outbox
- `TRANSCRIPT#{conversationId}`  written with a handoff, for its transcript link (transcripts.py)
- `STUDIO#{flow}#{customer}#{agent}`  the last Studio execution started for that contact

A handoff record owes its customer something until it is delivered, or failed with its hold
lifted and the customer told: until then it carries `promise = "handoff"` and `promiseDue`,
the sparse PromisesIndex the watchdog queries for what is overdue.

Every write is conditional, so two invocations touching one conversation cannot lose an
update, and AWS error codes become the domain's own exceptions here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from ..errors import ConcurrentUpdate, HeldForAnotherHandoff, StoreBusy, StoreError
from .dynamo import DynamoTable, TransactionCancelled, history_attribute, history_from, n, plain_item, s
from .records import Conversation, HandoffRecord, Hold, MessageClaim, StudioContact, TurnCommit
from .transcripts import pointer_put

MESSAGE_TTL_SECONDS = 3 * 24 * 3600
# Claims written before they carried `leaseUntil` count as held for this long after `claimedAt`.
LEGACY_LEASE_SECONDS = 30
HANDOFF_TTL_SECONDS = 30 * 24 * 3600
HANDOFF_PROMISE = "handoff"
PROMISES_INDEX = "PromisesIndex"
# How long a new handoff may wait for the stream's dispatcher before the watchdog takes it.
HANDOFF_GRACE_SECONDS = 120


def conversation_key(channel: str, customer: str, agent_number: str) -> str:
    return f"CONV#{channel.lower()}#{customer}#{agent_number}"


def message_key(message_sid: str) -> str:
    return f"MSG#{message_sid}"


def handoff_key(handoff_id: str) -> str:
    return f"HANDOFF#{handoff_id}"


def studio_contact_key(flow_sid: str, customer: str, agent_number: str) -> str:
    return f"STUDIO#{flow_sid}#{customer}#{agent_number}"


class SessionStore(DynamoTable):
    def __init__(self, client: Any, table_name: str, *, handoff_grace_seconds: int = HANDOFF_GRACE_SECONDS) -> None:
        super().__init__(client, table_name)
        self.handoff_grace_seconds = handoff_grace_seconds

    # -- webhook claims ---------------------------------------------------------------

    def claim_message(self, message_sid: str, *, now: int, lease_seconds: int, token: str = "") -> MessageClaim:
        """Claim a webhook for processing for `lease_seconds`; a claim whose lease ran out may be taken over.

        The lease is how long the claiming invocation can still run: once it is over, that
        invocation has ended (finished, failed or been stopped by the runtime) without answering.
        Sent again with the same `token` (its answer was lost), it finds its own claim and keeps it.
        """
        token = token or uuid.uuid4().hex
        try:
            self._update(
                message_key(message_sid),
                "SET kind = :kind, #status = :processing, claimToken = :token, claimedAt = :now, "
                "leaseUntil = :lease, expiresAt = :expires",
                condition="attribute_not_exists(pk) OR (#status = :processing AND (claimToken = :token OR "
                "leaseUntil < :now OR (attribute_not_exists(leaseUntil) AND claimedAt < :stale)))",
                values={
                    ":kind": "message",
                    ":processing": "processing",
                    ":token": token,
                    ":now": now,
                    ":lease": now + lease_seconds,
                    ":stale": now - LEGACY_LEASE_SECONDS,
                    ":expires": now + MESSAGE_TTL_SECONDS,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            return _claim_from(plain_item(exc.existing or {}))
        return MessageClaim(state="claimed", token=token)

    def message_reply(self, message_sid: str) -> MessageClaim:
        """The webhook's claim as it stands: answered, in progress (until its lease), or free (released)."""
        return _claim_from(self._get(message_key(message_sid)) or {})

    def release_message(self, message_sid: str, token: str) -> None:
        """Give up a claim after a failure, so Twilio's retry can process the webhook."""
        try:
            self._call(
                "delete_item",
                **self._request(
                    message_key(message_sid),
                    condition="claimToken = :token AND #status = :processing",
                    values={":token": token, ":processing": "processing"},
                ),
            )
        except ConcurrentUpdate:
            pass  # someone else's claim now, or already answered: nothing of ours to release

    # -- conversations ----------------------------------------------------------------

    def load_conversation(self, key: str) -> Conversation | None:
        item = self._get(key)
        return _conversation_from(item) if item else None

    def end_hold(self, key: str, *, now: int) -> bool:
        """Release a conversation from its human: the hold ends now, as if it had expired."""
        return self.release_hold(key, now=now) is not None

    def release_hold(self, key: str, *, now: int, handoff_id: str = "", conversation_id: str = "") -> Hold | None:
        """End a conversation's active hold now (its human is done); the hold as it was, or None.

        With `handoff_id` and/or `conversation_id`, only that handoff's hold is ended: a release
        meant for one handoff that arrives late (a stale desk row, a retry, Studio ending an old
        task) must not release the customer's next one. An active hold of another handoff raises
        HeldForAnotherHandoff and changes nothing. Without them, whatever hold is active is ended.
        The version moves on, so a turn computed against the held state is retried on fresh state.
        """
        condition = "attribute_exists(#hold) AND #hold.#until > :now"
        values: dict[str, Any] = {":now": now, ":one": 1}
        if handoff_id:
            condition += " AND #hold.handoffId = :handoff"
            values[":handoff"] = handoff_id
        if conversation_id:
            condition += " AND conversationId = :conversation"
            values[":conversation"] = conversation_id
        try:
            response = self._update(
                key,
                "SET #hold.#until = :now, version = version + :one",
                condition=condition,
                values=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            if (handoff_id or conversation_id) and exc.existing:
                held = _conversation_from(plain_item(exc.existing)).hold
                if held is not None and held.active(now):
                    raise HeldForAnotherHandoff(key) from None
            return None
        return _conversation_from(plain_item(response["Attributes"])).hold

    def lift_hold_after_failure(self, key: str, handoff_id: str, *, notice: str, now: int, root_id: str = "") -> bool:
        """Nobody is coming: end the hold, if it is still this handoff's, so the AI answers again.

        A redriven copy's hold names the original (`root_id`). `notice` rides on the ended hold
        for the next turn to say. The version moves on, as in `end_hold`, so a turn computed
        against the held state is retried.
        """
        try:
            self._update(
                key,
                "SET #hold.#until = :now, #hold.notice = :notice, version = version + :one",
                condition="#hold.handoffId IN (:handoff, :root) AND #hold.#until > :now",
                values={
                    ":now": now,
                    ":notice": notice,
                    ":handoff": handoff_id,
                    ":root": root_id or handoff_id,
                    ":one": 1,
                },
            )
        except ConcurrentUpdate:
            return False
        return True

    def commit_turn(self, commit: TurnCommit, *, now: int, ttl_seconds: int, attempt: int = 0) -> None:
        """Write the conversation, the webhook's reply and any handoff record atomically.

        The transaction carries a ClientRequestToken drawn from its claim, its content and
        `attempt`, so the same commit sent again after a lost answer (StoreNoAnswer) is applied
        once: DynamoDB answers a repeat within 10 minutes with the first one's success. A sender
        moves `attempt` on only after a cancellation, when nothing was applied.
        """
        conversation = commit.conversation
        items: list[dict[str, Any]] = [
            {"Put": self._conversation_put(conversation, now=now, ttl_seconds=ttl_seconds)},
            {
                "Update": self._request(
                    message_key(commit.message_sid),
                    update="SET #status = :done, reply = :reply, conversationKey = :conv REMOVE claimToken, leaseUntil",
                    condition="claimToken = :token",
                    values={
                        ":done": "done",
                        ":reply": commit.reply or "",
                        ":conv": conversation.key,
                        ":token": commit.claim_token,
                    },
                )
            },
        ]
        if commit.handoff is not None:
            items.append({"Put": self._handoff_put(commit.handoff, now=now)})
        if commit.transcript is not None:
            items.append({"Put": pointer_put(self._table, commit.transcript)})
        try:
            self._call("transact_write_items", TransactItems=items, ClientRequestToken=request_token(items, attempt))
        except TransactionCancelled as exc:
            reasons = exc.reasons
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise ConcurrentUpdate(
                    f"conversation {conversation.conversation_id} changed since version {conversation.version}"
                ) from None
            listed = ", ".join(r or "None" for r in reasons)
            if exc.busy:
                # Another transaction on one of these items, or throttling: nothing here changed.
                raise StoreBusy(f"turn not committed, store busy: {listed}", cancelled=True) from None
            raise StoreError(f"turn not committed: {listed}") from None

    def _conversation_put(self, conversation: Conversation, *, now: int, ttl_seconds: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": s(conversation.key),
            "kind": s("conversation"),
            "conversationId": s(conversation.conversation_id),
            "channel": s(conversation.channel),
            "customer": s(conversation.customer),
            "agentNumber": s(conversation.agent_number),
            "history": history_attribute(conversation.history),
            "unresolvedAttempts": n(conversation.unresolved_attempts),
            "version": n(conversation.version + 1),
            "updatedAt": n(now),
            "expiresAt": n(max(now + ttl_seconds, conversation.hold.until if conversation.hold else 0)),
        }
        if conversation.hold is not None:
            item["hold"] = {
                "M": {
                    "handoffId": s(conversation.hold.handoff_id),
                    "reason": s(conversation.hold.reason),
                    "until": n(conversation.hold.until),
                }
            }
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        if conversation.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :expected"
            put["ExpressionAttributeValues"] = {":expected": n(conversation.version)}
        return put

    # -- handoff records --------------------------------------------------------------

    def _handoff_put(self, record: HandoffRecord, *, now: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": s(handoff_key(record.handoff_id)),
            "kind": s("handoff"),
            "handoffId": s(record.handoff_id),
            "channel": s(record.channel),
            "conversationKey": s(record.conversation_key),
            "to": s(record.to),
            "from": s(record.from_),
            "payload": s(record.payload_json),
            "status": s(record.status),
            "deliveries": n(0),
            "createdAt": n(now),
            "expiresAt": n(now + HANDOFF_TTL_SECONDS),
            # Owed from the moment it is written: the watchdog's query finds it if no dispatcher does.
            "promise": s(HANDOFF_PROMISE),
            "promiseDue": n(now + self.handoff_grace_seconds),
        }
        if record.redriven_from:
            item["redrivenFrom"] = s(record.redriven_from)
            item["originCreatedAt"] = n(record.origin_created_at)
        if record.maybe_sent:
            item["maybeSent"] = {"BOOL": True}
        return {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}

    def insert_handoff(self, record: HandoffRecord, *, now: int) -> bool:
        """A new handoff record on its own (its stream INSERT delivers it); False if the id exists."""
        try:
            self._call("put_item", **self._handoff_put(record, now=now))
        except ConcurrentUpdate:
            return False
        return True

    def redrive_handoff(self, original_id: str, again: HandoffRecord, *, now: int) -> bool:
        """Write a handoff again as a new record and retire the original, in one transaction.

        False when the original was delivered or redriven meanwhile (nothing is written), so two
        redrives of one handoff cannot both write it again.
        """
        items = [
            {"Put": self._handoff_put(again, now=now)},
            {
                "Update": self._request(
                    handoff_key(original_id),
                    update="SET #status = :redriven, outcome = :redriven, lastError = :error, finishedAt = :now, "
                    "redrivenAs = :copy REMOVE leaseUntil, leaseToken, promise, promiseDue",
                    condition="#status IN (:pending, :dispatching, :failed)",
                    values={
                        ":redriven": "redriven",
                        ":error": f"redriven as {again.handoff_id}",
                        ":copy": again.handoff_id,
                        ":now": now,
                        ":pending": "pending",
                        ":dispatching": "dispatching",
                        ":failed": "failed",
                    },
                )
            },
        ]
        try:
            self._call("transact_write_items", TransactItems=items)
        except TransactionCancelled as exc:
            if "ConditionalCheckFailed" in exc.reasons:
                return False
            raise StoreError(f"handoff not redriven: {', '.join(r or 'None' for r in exc.reasons)}") from None
        return True

    def handoff_promises(self, *, due_before: int, limit: int = 100) -> list[str]:
        """Ids of handoff records whose promise fell due before a time, oldest due first.

        A Query of the sparse PromisesIndex, never a Scan: it reads only what is still owed. The
        index is eventually consistent and KEYS_ONLY, so callers read each record again.
        """
        ids: list[str] = []
        start = None
        while len(ids) < limit:
            page = self._call(
                "query",
                TableName=self._table,
                IndexName=PROMISES_INDEX,
                KeyConditionExpression="#promise = :kind AND promiseDue <= :due",
                ExpressionAttributeNames={"#promise": "promise"},
                ExpressionAttributeValues={":kind": s(HANDOFF_PROMISE), ":due": n(due_before)},
                Limit=limit - len(ids),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            ids += [item["pk"]["S"].removeprefix("HANDOFF#") for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return ids

    def get_handoff(self, handoff_id: str) -> HandoffRecord | None:
        item = self._get(handoff_key(handoff_id))
        return _handoff_from(item) if item else None

    def claim_handoff(self, handoff_id: str, *, now: int, lease_seconds: int) -> tuple[HandoffRecord | None, bool]:
        """Take a pending handoff (or one whose dispatcher died) for delivery.

        Returns the record and whether this caller now owns it. Delivered and failed records
        are never claimed again: that is what makes a redelivered stream record harmless.
        The lease carries a fresh token: only its holder may record the handoff's outcome. A
        record taken over from a dispatcher that died holding it may have been posted to Studio.
        """
        token = uuid.uuid4().hex
        try:
            response = self._update(
                handoff_key(handoff_id),
                # While leased, the promise falls due when the lease runs out: a dispatcher that
                # died holding it is found by the watchdog then, not before.
                "SET #status = :dispatching, leaseUntil = :lease, leaseToken = :token, deliveries = deliveries + :one, "
                "promise = :promise, promiseDue = :lease",
                condition="attribute_exists(pk) AND (#status = :pending OR "
                "(#status = :dispatching AND leaseUntil < :now))",
                values={
                    ":dispatching": "dispatching",
                    ":pending": "pending",
                    ":lease": now + lease_seconds,
                    ":now": now,
                    ":one": 1,
                    ":promise": HANDOFF_PROMISE,
                    ":token": token,
                },
                # The old image, to know whether a dead dispatcher's lease was taken over.
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            return (_handoff_from(plain_item(exc.existing)) if exc.existing else None), False
        old = _handoff_from(plain_item(response["Attributes"]))
        claimed = old._replace(
            status="dispatching",
            lease_until=now + lease_seconds,
            lease_token=token,
            deliveries=old.deliveries + 1,
            maybe_sent=old.maybe_sent or old.status == "dispatching",
        )
        return claimed, True

    def finish_handoff(
        self,
        handoff_id: str,
        *,
        lease_token: str,
        status: str,
        outcome: str,
        now: int,
        execution_sid: str = "",
        error: str = "",
        promise_due: int | None = None,
    ) -> HandoffRecord:
        """Record a handoff's outcome, as the holder of its lease. Its promise is settled, unless
        `promise_due` keeps it owed. The record as it now is (a release may have marked it).

        A failed handoff keeps its promise (due at once) until its hold is lifted and its customer
        told: if this invocation dies before that, the watchdog finishes the job.
        Raises ConcurrentUpdate when the lease is not `lease_token`'s any more (it ran out and
        another dispatcher took the record): that one records the outcome, never both.
        """
        values: dict[str, Any] = {
            ":status": status,
            ":outcome": outcome,
            ":sid": execution_sid,
            ":error": error,
            ":now": now,
            ":dispatching": "dispatching",
            ":token": lease_token,
        }
        update = "SET #status = :status, outcome = :outcome, executionSid = :sid, lastError = :error, finishedAt = :now"
        if promise_due is None:
            update += " REMOVE leaseUntil, leaseToken, promise, promiseDue"
        else:
            update += ", promise = :promise, promiseDue = :due REMOVE leaseUntil, leaseToken"
            values.update({":promise": HANDOFF_PROMISE, ":due": promise_due})
        response = self._update(
            handoff_key(handoff_id),
            update,
            condition="#status = :dispatching AND leaseToken = :token",
            values=values,
            ReturnValues="ALL_NEW",
        )
        return _handoff_from(plain_item(response["Attributes"]))

    def settle_promise(self, handoff_id: str) -> None:
        """Nothing more is owed for this handoff: it leaves the PromisesIndex."""
        self._update(handoff_key(handoff_id), "REMOVE promise, promiseDue", condition="attribute_exists(pk)")

    def release_handoff(
        self, handoff_id: str, *, lease_token: str, error: str, now: int, maybe_sent: bool = False
    ) -> None:
        """Hand a claimed record back for a later delivery, keeping why this one failed.

        Its promise falls due after the grace again: the stream redelivers it long before, and
        the watchdog takes it if the stream does not. `maybe_sent`: a POST of this delivery
        got no answer, so Studio may have started an execution (remembered for good).
        """
        update = "SET #status = :pending, lastError = :error, promise = :promise, promiseDue = :due"
        values: dict[str, Any] = {
            ":pending": "pending",
            ":dispatching": "dispatching",
            ":error": error,
            ":promise": HANDOFF_PROMISE,
            ":due": now + self.handoff_grace_seconds,
            ":token": lease_token,
        }
        if maybe_sent:
            update += ", maybeSent = :sent"
            values[":sent"] = True
        try:
            self._update(
                handoff_key(handoff_id),
                update + " REMOVE leaseUntil, leaseToken",
                condition="#status = :dispatching AND leaseToken = :token",
                values=values,
            )
        except ConcurrentUpdate:
            pass

    def claim_customer_notice(self, handoff_id: str, *, now: int) -> bool:
        """Claim the one failure message a handoff's customer may get; False if it was claimed before."""
        try:
            self._update(
                handoff_key(handoff_id),
                "SET customerNotifiedAt = :now",
                condition="attribute_exists(pk) AND attribute_not_exists(customerNotifiedAt)",
                values={":now": now},
            )
        except ConcurrentUpdate:
            return False
        return True

    def note_execution_end(self, handoff_id: str, *, ended: bool, detail: str, now: int) -> None:
        """What became of the handoff's Studio execution when its conversation was released."""
        self._update(
            handoff_key(handoff_id),
            "SET executionEnded = :ended, executionEndDetail = :detail, executionEndedAt = :now",
            condition="attribute_exists(pk)",
            values={":ended": ended, ":detail": detail, ":now": now},
        )

    def mark_released(self, handoff_id: str, *, now: int) -> tuple[HandoffRecord | None, bool]:
        """Its conversation was released before an execution was recorded: its dispatcher posts
        nothing, or ends what it started. False (and the record) when an execution was recorded
        first: the releaser ends that one itself.
        """
        try:
            response = self._update(
                handoff_key(handoff_id),
                "SET releasedAt = :now",
                condition="attribute_exists(pk) AND (attribute_not_exists(executionSid) OR executionSid = :none)",
                values={":now": now, ":none": ""},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            return (_handoff_from(plain_item(exc.existing)) if exc.existing else None), False
        return _handoff_from(plain_item(response["Attributes"])), True

    # -- Studio contacts ----------------------------------------------------------------

    def record_execution(
        self,
        *,
        flow_sid: str,
        customer: str,
        agent_number: str,
        execution_sid: str,
        handoff_id: str,
        conversation_id: str,
        now: int,
        status: str = "active",
    ) -> None:
        """The execution a handoff started (or was found to own) is the contact's last one now."""
        self._call(
            "put_item",
            TableName=self._table,
            Item={
                "pk": s(studio_contact_key(flow_sid, customer, agent_number)),
                "kind": s("studio_contact"),
                "executionSid": s(execution_sid),
                "handoffId": s(handoff_id),
                "conversationId": s(conversation_id),
                "status": s(status),
                "startedAt": n(now),
                "expiresAt": n(now + HANDOFF_TTL_SECONDS),
            },
        )

    def studio_contact(self, flow_sid: str, customer: str, agent_number: str) -> StudioContact | None:
        item = self._get(studio_contact_key(flow_sid, customer, agent_number))
        if not item:
            return None
        return StudioContact(
            execution_sid=item["executionSid"],
            handoff_id=item.get("handoffId", ""),
            conversation_id=item.get("conversationId", ""),
            status=item.get("status", "active"),
            started_at=int(item.get("startedAt", 0)),
        )

    def mark_execution_ended(
        self, *, flow_sid: str, customer: str, agent_number: str, execution_sid: str, now: int
    ) -> None:
        """The contact's execution was ended by us; a newer one recorded meanwhile is left alone."""
        try:
            self._update(
                studio_contact_key(flow_sid, customer, agent_number),
                "SET #status = :ended, endedAt = :now",
                condition="executionSid = :sid",
                values={":ended": "ended", ":now": now, ":sid": execution_sid},
            )
        except ConcurrentUpdate:
            pass


def request_token(items: list[dict[str, Any]], attempt: int = 0) -> str:
    """An idempotency token for a transaction: the same items and attempt, the same token (36 characters at most)."""
    content = json.dumps([attempt, items], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()[:36]


def _claim_from(item: dict[str, Any]) -> MessageClaim:
    if not item:
        return MessageClaim(state="free")
    if item.get("status") == "done":
        return MessageClaim(state="done", reply=item.get("reply"))
    lease_until = item.get("leaseUntil", int(item.get("claimedAt", 0)) + LEGACY_LEASE_SECONDS)
    return MessageClaim(state="in_progress", lease_until=int(lease_until))


def _conversation_from(item: dict[str, Any]) -> Conversation:
    hold = item.get("hold")
    return Conversation(
        key=item["pk"],
        conversation_id=item["conversationId"],
        channel=item["channel"],
        customer=item["customer"],
        agent_number=item["agentNumber"],
        history=history_from(item.get("history", [])),
        unresolved_attempts=int(item.get("unresolvedAttempts", 0)),
        hold=Hold(
            handoff_id=hold["handoffId"], reason=hold["reason"], until=int(hold["until"]), notice=hold.get("notice", "")
        )
        if hold
        else None,
        version=int(item["version"]),
    )


def _handoff_from(item: dict[str, Any]) -> HandoffRecord:
    return HandoffRecord(
        handoff_id=item["handoffId"],
        channel=item["channel"],
        conversation_key=item.get("conversationKey", ""),
        to=item.get("to", ""),
        from_=item.get("from", ""),
        payload_json=item.get("payload", ""),
        status=item.get("status", "pending"),
        deliveries=int(item.get("deliveries", 0)),
        execution_sid=item.get("executionSid", ""),
        outcome=item.get("outcome", ""),
        error=item.get("lastError", ""),
        created_at=int(item.get("createdAt", 0)),
        lease_until=int(item.get("leaseUntil", 0)),
        customer_notified="customerNotifiedAt" in item,
        lease_token=item.get("leaseToken", ""),
        maybe_sent=bool(item.get("maybeSent", False)),
        redriven_from=item.get("redrivenFrom", ""),
        origin_created_at=int(item.get("originCreatedAt", 0)),
        released="releasedAt" in item,
        redriven_as=item.get("redrivenAs", ""),
    )
