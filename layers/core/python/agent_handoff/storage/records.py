"""Plain records the services work with; the store maps them to and from DynamoDB items.

NamedTuples rather than frozen dataclasses: every cold start creates each class, and a
NamedTuple costs a tenth as much to create (no generated methods to compile).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Role = Literal["user", "assistant"]
HandoffStatus = Literal["pending", "dispatching", "delivered", "failed", "redriven", "superseded"]


class Turn(NamedTuple):
    role: Role
    text: str
    # A voice reply the caller talked over: `text` is what they heard of it.
    interrupted: bool = False


class Hold(NamedTuple):
    """The conversation is with a human: the AI stays silent until `until` (epoch seconds).

    `notice` is set when the hold was lifted because its handoff failed: the AI's next reply
    starts with it, so the customer learns plainly that no person is coming.
    """

    handoff_id: str
    reason: str
    until: int
    notice: str = ""

    def active(self, now: int) -> bool:
        return now < self.until


class Conversation(NamedTuple):
    key: str
    conversation_id: str
    channel: str
    customer: str
    agent_number: str
    history: tuple[Turn, ...] = ()
    unresolved_attempts: int = 0
    hold: Hold | None = None
    version: int = 0  # 0: not stored yet

    def with_turns(self, *turns: Turn, limit: int) -> Conversation:
        return self._replace(history=(self.history + turns)[-limit:])


class HandoffRecord(NamedTuple):
    handoff_id: str
    channel: str
    conversation_key: str
    to: str
    from_: str
    payload_json: str
    status: HandoffStatus = "pending"
    deliveries: int = 0
    execution_sid: str = ""
    outcome: str = ""
    error: str = ""
    created_at: int = 0
    lease_until: int = 0
    customer_notified: bool = False  # the failure SMS was claimed (sent at most once)
    lease_token: str = ""  # the claim that holds the lease: only its holder records an outcome
    # A POST whose answer was lost (or a dispatcher that died holding the lease) may have started an
    # execution: Studio is asked for it before anything is posted again or the handoff is failed.
    maybe_sent: bool = False
    redriven_from: str = ""  # a redriven copy: the original handoff's id (its hold, its executions)
    origin_created_at: int = 0  # a redriven copy: when the original was recorded
    released: bool = False  # its conversation was released before an execution was recorded
    redriven_as: str = ""  # a redriven original: the copy that delivers it

    @property
    def undelivered(self) -> bool:
        return self.status in ("pending", "dispatching")

    @property
    def root_id(self) -> str:
        """The id the customer's hold and the handoff's first executions carry: the original's."""
        return self.redriven_from or self.handoff_id

    @property
    def root_created_at(self) -> int:
        """When the customer was first told a person would follow up."""
        return self.origin_created_at or self.created_at


class StudioContact(NamedTuple):
    """The last Studio execution this product started for a contact (flow, customer, agent number).

    Studio keeps one active execution per contact and its 409 names none, so this is how a
    dispatcher meeting a 409 knows which execution is active and which handoff started it.
    """

    execution_sid: str
    handoff_id: str
    conversation_id: str
    status: Literal["active", "ended"] = "active"
    started_at: int = 0


class MessageClaim(NamedTuple):
    """A webhook's claim by its SID: ours to process, answered, in progress elsewhere, or free (released).

    `lease_until` (epoch seconds) is when an in-progress claim's invocation must have ended.
    """

    state: Literal["claimed", "done", "in_progress", "free"]
    token: str = ""
    reply: str | None = None
    lease_until: int = 0


class TranscriptPointer(NamedTuple):
    """Written with a handoff: where its conversation's turns live and what the human was told."""

    conversation_id: str
    target_key: str
    channel: str  # sms | voice
    trigger: str
    reason: str
    summary: str
    handed_off_at: int
    expires_at: int


class TurnCommit(NamedTuple):
    """Everything one SMS turn writes, in one transaction: nothing can be half-done."""

    conversation: Conversation
    message_sid: str
    claim_token: str
    reply: str | None
    handoff: HandoffRecord | None = None
    transcript: TranscriptPointer | None = None  # with a handoff: what its transcript link reads
