"""Posts ConversationRelay frames to a WebSocket connection through API Gateway."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .protocol import OutboundMessage

log = logging.getLogger(__name__)

_GONE = ("GoneException", "410")


def _code(exc: Exception) -> str:
    return str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code", type(exc).__name__))


class ApiGatewaySender:
    """One connection's outbound side.

    `send` answers False when a post failed. Only a 410 (GoneException) means the connection is
    gone for good (`gone`); any other failure (a throttle that outlived the SDK's retries, a
    read timeout) is one lost post, and the next one is tried.
    """

    def __init__(self, client: Any, connection_id: str, *, urgent_client: Callable[[], Any] | None = None) -> None:
        """`urgent_client`: makes the client `hurry` switches to (built only then: cold starts matter)."""
        self._client = client
        self._urgent_client = urgent_client
        self._connection_id = connection_id
        self.gone = False
        self.sent = 0
        self.failed = 0

    def send(self, message: OutboundMessage) -> bool:
        if self.gone:
            return False
        try:
            self._client.post_to_connection(ConnectionId=self._connection_id, Data=message.frame().encode("utf-8"))
        except Exception as exc:
            code = _code(exc)
            if code in _GONE:
                log.info("connection %s is gone; nothing more is sent", self._connection_id)
                self.gone = True
            else:
                log.warning("posting a %s frame to connection %s failed: %s", message.type, self._connection_id, code)
                self.failed += 1
            return False
        self.sent += 1
        return True

    def hurry(self) -> None:
        """From now on each post is one short attempt: what is left of the invocation is its reserve."""
        if self._urgent_client is not None:
            self._client = self._urgent_client()
            self._urgent_client = None

    def close(self) -> bool:
        """Close the socket (a refused setup): API Gateway's DeleteConnection. False if it may be open still."""
        self.gone = True
        try:
            self._client.delete_connection(ConnectionId=self._connection_id)
        except Exception as exc:
            if _code(exc) not in _GONE:
                log.warning("closing connection %s failed: %s", self._connection_id, _code(exc))
                return False
        return True
