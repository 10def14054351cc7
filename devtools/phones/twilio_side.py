"""What the simulators need to act like Twilio over the network: signed form POSTs."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from twilio.request_validator import RequestValidator


def post_signed(
    url: str, params: dict[str, str], auth_token: str, *, signed_url: str | None = None, timeout: float = 20
) -> tuple[int, str]:
    """POST a form the way Twilio does: X-Twilio-Signature over the URL it was configured with."""
    signature = RequestValidator(auth_token).compute_signature(signed_url or url, params)
    request = urllib.request.Request(  # noqa: S310 - the developer's own gateway URL
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())
