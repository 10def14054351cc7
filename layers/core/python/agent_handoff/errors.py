"""The domain's own exceptions; handlers map them to responses in one place."""


class ConfigError(RuntimeError):
    """The environment does not describe a runnable function. The message names the variable.

    `problems` holds one phrase per variable ("LLM_PROVIDER must be one of ..."), for people.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class WebhookRejected(Exception):
    """A request that is not a valid, authentic Twilio webhook. Carries the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StoreError(Exception):
    """The session store could not complete an operation (after the SDK's own retries)."""


class ConcurrentUpdate(StoreError):
    """Another invocation changed the same item first; reload and try again.

    `existing` holds the item as it was when the condition failed, when DynamoDB returned it.
    """

    def __init__(self, message: str, existing: dict | None = None) -> None:
        super().__init__(message)
        self.existing = existing


class StoreBusy(StoreError):
    """DynamoDB refused for now (throttling, a conflicting transaction): the same write may succeed soon.

    `cancelled`: a transaction DynamoDB ran and cancelled, so certainly not applied.
    """

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


class StoreNoAnswer(StoreError):
    """DynamoDB's answer was lost (a read timeout, a dropped connection): the write may or may not have been applied."""


class HeldForAnotherHandoff(Exception):
    """A release named one handoff, and the conversation is with a person for another: nothing was released."""


class ProviderError(Exception):
    """The LLM provider failed, timed out or answered something unusable."""
