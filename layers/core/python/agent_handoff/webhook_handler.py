"""The shape every Twilio HTTP webhook handler shares: authenticate, then act, errors mapped once.

Bad or unauthenticated requests get their 4xx here and never reach the function's body;
store and configuration failures become a plain 500 (Twilio may retry; nothing was half-done).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import wiring
from .errors import ConfigError, StoreError, WebhookRejected
from .observability import config_problem
from .webhooks import responses
from .webhooks.request import require_account, require_fields, verified_request

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def twilio_webhook(
    *required_fields: str, logger: Any, with_context: bool = False
) -> Callable[[Callable[..., dict[str, Any]]], Handler]:
    """`with_context`: the body is called as body(request, event, context), to work to the runtime's deadline."""

    def decorate(body: Callable[..., dict[str, Any]]) -> Handler:
        @functools.wraps(body)
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            try:
                settings = wiring.settings().require("TWILIO_AUTH_TOKEN")
                request = verified_request(
                    event, auth_token=settings.twilio_auth_token, public_base_url=settings.public_base_url
                )
                require_account(request.params, settings.twilio_account_sid)
                require_fields(request.params, *required_fields)
                return body(request, event, context) if with_context else body(request, event)
            except WebhookRejected as exc:
                logger.warning("webhook refused", extra={"status": exc.status, "reason": exc.reason})
                return responses.rejection(exc)
            except ConfigError as exc:
                config_problem(logger, exc)
                return responses.server_error()
            except StoreError:
                logger.exception("webhook not processed")
                return responses.server_error()

        return handler

    return decorate
