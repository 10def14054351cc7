"""SMS sessions on DynamoDB: conversations, webhook claims and handoff records.

One table, one string key `pk`, items told apart by `kind`:

- `CONV#...`      a conversation: history, escalation counters, the handoff hold, `version`
- `MSG#{sid}`     a webhook claim and its reply, for deduplication of Twilio retries
- `HANDOFF#{id}`  a handoff record; its INSERT on the table's stream is the dispatch outbox
- `TRANSCRIPT#{conversationId}`  written with a handoff, for its transcript link (transcripts.py)

Every write is conditional, so two invocations touching one conversation cannot lose an
update, and AWS error codes become the domain's own exceptions here and nowhere else.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import ConcurrentUpdate, StoreBusy, StoreError
from .dynamo import DynamoTable, TransactionCancelled, history_attribute, history_from, n, plain_item, s
from .records import Conversation, HandoffRecord, Hold, MessageClaim, TurnCommit
from .transcripts import pointer_put

MESSAGE_TTL_SECONDS = 3 * 24 * 3600
# Claims written before they carried `leaseUntil` count as held for this long after `claimedAt`.
LEGACY_LEASE_SECONDS = 30
HANDOFF_TTL_SECONDS = 30 * 24 * 3600


def conversation_key(channel: str, customer: str, agent_number: str) -> str:
    return f"CONV#{channel.lower()}#{customer}#{agent_number}"


def message_key(message_sid: str) -> str:
    return f"MSG#{message_sid}"


def handoff_key(handoff_id: str) -> str:
    return f"HANDOFF#{handoff_id}"


class SessionStore(DynamoTable):
    # -- webhook claims ---------------------------------------------------------------

    def claim_message(self, message_sid: str, *, now: int, lease_seconds: int) -> MessageClaim:
        """Claim a webhook for processing for `lease_seconds`; a claim whose lease ran out may be taken over.

        The lease is how long the claiming invocation can still run: once it is over, that
        invocation has ended (finished, failed or been stopped by the runtime) without answering.
        """
        token = uuid.uuid4().hex
        try:
            self._update(
                message_key(message_sid),
                "SET kind = :kind, #status = :processing, claimToken = :token, claimedAt = :now, "
                "leaseUntil = :lease, expiresAt = :expires",
                condition="attribute_not_exists(pk) OR (#status = :processing AND (leaseUntil < :now OR "
                "(attribute_not_exists(leaseUntil) AND claimedAt < :stale)))",
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
        """Release a conversation from its human: the hold ends now, as if it had expired.

        The version moves on, so a turn computed against the held state is retried on fresh state.
        """
        try:
            self._update(
                key,
                "SET #hold.#until = :now, version = version + :one",
                condition="attribute_exists(#hold) AND #hold.#until > :now",
                values={":now": now, ":one": 1},
            )
        except ConcurrentUpdate:
            return False
        return True

    def commit_turn(self, commit: TurnCommit, *, now: int, ttl_seconds: int) -> None:
        """Write the conversation, the webhook's reply and any handoff record atomically."""
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
            self._call("transact_write_items", TransactItems=items)
        except TransactionCancelled as exc:
            reasons = exc.reasons
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise ConcurrentUpdate(
                    f"conversation {conversation.conversation_id} changed since version {conversation.version}"
                ) from None
            listed = ", ".join(r or "None" for r in reasons)
            if exc.busy:
                # Another transaction on one of these items, or throttling: nothing here changed.
                raise StoreBusy(f"turn not committed, store busy: {listed}") from None
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
        return {
            "TableName": self._table,
            "Item": {
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
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def insert_handoff(self, record: HandoffRecord, *, now: int) -> bool:
        """A new handoff record on its own (its stream INSERT delivers it); False if the id exists."""
        try:
            self._call("put_item", **self._handoff_put(record, now=now))
        except ConcurrentUpdate:
            return False
        return True

    def undelivered_handoffs(self, *, created_before: int) -> list[HandoffRecord]:
        """Handoff records still pending or dispatching since before a time: a dispatcher gave up on them."""
        records, start = [], None
        while True:
            page = self._call(
                "scan",
                TableName=self._table,
                FilterExpression="kind = :handoff AND #status IN (:pending, :dispatching) AND createdAt < :before",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":handoff": s("handoff"),
                    ":pending": s("pending"),
                    ":dispatching": s("dispatching"),
                    ":before": n(created_before),
                },
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            records += [_handoff_from(plain_item(item)) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return records

    def get_handoff(self, handoff_id: str) -> HandoffRecord | None:
        item = self._get(handoff_key(handoff_id))
        return _handoff_from(item) if item else None

    def claim_handoff(self, handoff_id: str, *, now: int, lease_seconds: int) -> tuple[HandoffRecord | None, bool]:
        """Take a pending handoff (or one whose dispatcher died) for delivery.

        Returns the record and whether this caller now owns it. Delivered and failed records
        are never claimed again: that is what makes a redelivered stream record harmless.
        """
        try:
            response = self._update(
                handoff_key(handoff_id),
                "SET #status = :dispatching, leaseUntil = :lease, deliveries = deliveries + :one",
                condition="attribute_exists(pk) AND (#status = :pending OR "
                "(#status = :dispatching AND leaseUntil < :now))",
                values={
                    ":dispatching": "dispatching",
                    ":pending": "pending",
                    ":lease": now + lease_seconds,
                    ":now": now,
                    ":one": 1,
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConcurrentUpdate as exc:
            return (_handoff_from(plain_item(exc.existing)) if exc.existing else None), False
        return _handoff_from(plain_item(response["Attributes"])), True

    def finish_handoff(
        self,
        handoff_id: str,
        *,
        status: str,
        outcome: str,
        now: int,
        execution_sid: str = "",
        error: str = "",
    ) -> None:
        self._update(
            handoff_key(handoff_id),
            "SET #status = :status, outcome = :outcome, executionSid = :sid, "
            "lastError = :error, finishedAt = :now REMOVE leaseUntil",
            condition="attribute_exists(pk)",
            values={":status": status, ":outcome": outcome, ":sid": execution_sid, ":error": error, ":now": now},
        )

    def release_handoff(self, handoff_id: str, *, error: str) -> None:
        """Hand a claimed record back for a later delivery, keeping why this one failed."""
        try:
            self._update(
                handoff_key(handoff_id),
                "SET #status = :pending, lastError = :error REMOVE leaseUntil",
                condition="#status = :dispatching",
                values={":pending": "pending", ":dispatching": "dispatching", ":error": error},
            )
        except ConcurrentUpdate:
            pass


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
        hold=Hold(handoff_id=hold["handoffId"], reason=hold["reason"], until=int(hold["until"])) if hold else None,
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
    )
