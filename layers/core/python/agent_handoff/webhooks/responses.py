"""HTTP responses for API Gateway, shaped in one place."""

from __future__ import annotations

from typing import Any

from ..errors import WebhookRejected


def twiml(body: str) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"Content-Type": "text/xml; charset=utf-8"}, "body": body}


def rejection(exc: WebhookRejected) -> dict[str, Any]:
    """A refusal that says what is wrong and reveals nothing else."""
    return {
        "statusCode": exc.status,
        "headers": {"Content-Type": "text/plain; charset=utf-8"},
        "body": exc.reason + "\n",
    }


def server_error(message: str = "temporarily unable to process this webhook") -> dict[str, Any]:
    return {"statusCode": 500, "headers": {"Content-Type": "text/plain; charset=utf-8"}, "body": message + "\n"}
