"""What a transcript link reads: a pointer from the conversation id to the item that holds the turns.

- `TRANSCRIPT#{conversationId}`  written with the handoff, in the same write: `target` (the
  conversation's or call's key), the channel, and what the human is told (trigger, reason,
  summary, when). It expires with the item it points to.

Why a pointer: an SMS conversation's key holds the customer's and the agent's numbers, and the
link must carry neither; the conversation id is random, so it alone identifies the conversation,
and one GetItem on the pointer then one on its target read it without a scan or an index.
The target must still carry the same conversation id: once a released customer's conversation
restarts under a new id, a link to the old one finds nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .dynamo import DynamoTable, history_from, n, s
from .records import TranscriptPointer, Turn


def transcript_key(conversation_id: str) -> str:
    return f"TRANSCRIPT#{conversation_id}"


class Transcript(NamedTuple):
    conversation_id: str
    channel: str
    customer: str  # in clear: the page masks it
    turns: tuple[Turn, ...]
    trigger: str
    reason: str
    summary: str
    handed_off_at: int
    kept_until: int  # the item's TTL: after it, DynamoDB may delete the conversation


def pointer_put(table: str, pointer: TranscriptPointer) -> dict[str, Any]:
    """The pointer as a Put for a transaction: a second handoff of the same conversation replaces it."""
    return {
        "TableName": table,
        "Item": {
            "pk": s(transcript_key(pointer.conversation_id)),
            "kind": s("transcript"),
            "conversationId": s(pointer.conversation_id),
            "target": s(pointer.target_key),
            "channel": s(pointer.channel),
            "trigger": s(pointer.trigger),
            "reason": s(pointer.reason),
            "summary": s(pointer.summary),
            "handedOffAt": n(pointer.handed_off_at),
            "expiresAt": n(pointer.expires_at),
        },
    }


class TranscriptStore(DynamoTable):
    def find(self, conversation_id: str, *, now: int) -> Transcript | None:
        """The conversation as stored now, or None when it is gone (expired, restarted, never handed off)."""
        pointer = self._get(transcript_key(conversation_id))
        if not pointer or _expired(pointer, now):
            return None
        item = self._get(str(pointer.get("target", "")))
        # DynamoDB deletes expired items some time after their TTL: an expired one is already gone here.
        if not item or item.get("conversationId") != conversation_id or _expired(item, now):
            return None
        return Transcript(
            conversation_id=conversation_id,
            channel=str(pointer.get("channel", "")),
            customer=str(item.get("customer") or item.get("caller") or ""),
            turns=history_from(item.get("history", [])),
            trigger=str(pointer.get("trigger", "")),
            reason=str(pointer.get("reason", "")),
            summary=str(pointer.get("summary", "")),
            handed_off_at=int(pointer.get("handedOffAt", 0)),
            kept_until=int(item.get("expiresAt", 0)),
        )


def _expired(item: dict[str, Any], now: int) -> bool:
    expires_at = item.get("expiresAt")
    return isinstance(expires_at, int) and expires_at <= now
