"""Posts ConversationRelay frames to a WebSocket connection through API Gateway."""

from __future__ import annotations

import logging
from typing import Any

from .protocol import OutboundMessage

log = logging.getLogger(__name__)


class ApiGatewaySender:
    """One connection's outbound side. `send` answers False once the connection is gone (410)."""

    def __init__(self, client: Any, connection_id: str) -> None:
        self._client = client
        self._connection_id = connection_id
        self.gone = False
        self.sent = 0

    def send(self, message: OutboundMessage) -> bool:
        if self.gone:
            return False
        try:
            self._client.post_to_connection(ConnectionId=self._connection_id, Data=message.frame().encode("utf-8"))
        except Exception as exc:
            code = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code", type(exc).__name__)
            if code in ("GoneException", "410"):
                log.info("connection %s is gone; nothing more is sent", self._connection_id)
            else:
                log.warning("posting to connection %s failed: %s", self._connection_id, code)
            self.gone = True
            return False
        self.sent += 1
        return True
