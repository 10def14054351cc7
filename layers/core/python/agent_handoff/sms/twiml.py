"""TwiML responses, built with twilio's own classes (they escape what the agent says)."""

from __future__ import annotations

from twilio.twiml.messaging_response import MessagingResponse

# The SMS body limit; a longer reply would be refused by Twilio as a whole.
MAX_SMS_CHARS = 1600


def message_reply(text: str | None) -> str:
    response = MessagingResponse()
    if text:
        response.message(text[:MAX_SMS_CHARS])
    return str(response)
