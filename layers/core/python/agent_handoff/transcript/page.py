"""The transcript as a small accessible HTML page, or as JSON, and the refusals in the same two forms.

The page is static HTML: semantic elements, `lang`, headings, an ordered list of turns, readable
without its stylesheet. It loads nothing: no script, no image, no font, and its Content-Security-
Policy allows only its own inline stylesheet (by hash), so text a customer typed, escaped here,
could not run even if escaping failed. It is never cached and sends no Referer, since the URL is
the credential. Card numbers are removed from every text, and the customer's own number is masked
in whatever format it was written (other numbers stay: the human may need them).

Hand-written rather than a template engine: one page of fixed structure, and a template library
would be the only dependency of this function's cold start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from html import escape
from typing import Any

from ..masking import mask_number_in, mask_phone
from ..pan_redaction import redact_pans
from ..storage.records import Turn
from ..storage.transcripts import Transcript

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:46rem;padding:1rem;color:#1b1b1b;background:#fff}"
    "h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}dt{font-weight:600}dd{margin:0}"
    "ol{list-style:none;padding:0;margin:0}li{margin:.5rem 0;padding:.5rem .75rem;border-radius:.5rem;"
    "border:1px solid #c8c8c8}li.customer{background:#eef4ff;margin-right:3rem}li.agent{background:#f4f4f4;"
    "margin-left:3rem}.who{font-size:.85rem;font-weight:600;margin:0;color:#3b3b3b}.said{margin:0;"
    "white-space:pre-wrap;overflow-wrap:anywhere}.note{color:#3b3b3b;font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HTML_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}
JSON_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
TRIGGERS = {
    "llm": "the AI agent decided a person should take over",
    "human_requested": "the customer asked for a person",
    "billing_dispute": "a billing dispute",
    "account_security": "an account security concern",
    "frustration": "the customer was frustrated",
    "unresolved": "the AI agent could not resolve the issue",
    "dtmf_zero": "the caller pressed 0",
    "agent_error": "the AI agent failed",
    "agent_timeout": "the AI agent took too long",
    "connection_failed": "the call's connection to the AI agent failed",
    "agent_handoff": "the AI agent handed off the call",
}


def wants_json(accept: str) -> bool:
    """JSON for `Accept: application/json`; a browser (text/html, */*) gets the page."""
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return "application/json" in kinds and "text/html" not in kinds


def response(status: int, body: str, *, as_json: bool) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(JSON_HEADERS if as_json else HTML_HEADERS), "body": body}


def render_json(transcript: Transcript, *, link_expires_at: int) -> str:
    return json.dumps(
        {
            "conversationId": transcript.conversation_id,
            "channel": transcript.channel,
            "customer": mask_phone(transcript.customer),
            "handoff": {
                "trigger": transcript.trigger,
                "reason": _clean(transcript.reason, transcript.customer),
                "summary": _clean(transcript.summary, transcript.customer),
                "at": _iso(transcript.handed_off_at),
            },
            "keptUntil": _iso(transcript.kept_until),
            "linkExpiresAt": _iso(link_expires_at),
            "turns": [
                {
                    "role": "customer" if turn.role == "user" else "agent",
                    "text": _clean(turn.text, transcript.customer),
                    "interrupted": turn.interrupted,
                }
                for turn in transcript.turns
            ],
        },
        ensure_ascii=False,
    )


def render_html(transcript: Transcript, *, link_expires_at: int) -> str:
    voice = transcript.channel == "voice"
    person = "Caller" if voice else "Customer"
    channel = "Phone call" if voice else "SMS"
    customer = mask_phone(transcript.customer) or "unknown"
    trigger = TRIGGERS.get(transcript.trigger, transcript.trigger or "not recorded")
    facts = [
        ("Reason", escape(_clean(transcript.reason, transcript.customer) or "none given")),
        ("Trigger", escape(trigger)),
        ("Summary", escape(_clean(transcript.summary, transcript.customer) or "none")),
        ("Channel", channel),
        (person, escape(customer)),
        ("Handed off", _time(transcript.handed_off_at)),
        ("Conversation", f"<code>{escape(transcript.conversation_id)}</code>"),
    ]
    turns = "\n".join(_turn(turn, person, transcript.customer) for turn in transcript.turns)
    listing = (
        f'<ol class="turns" role="list" aria-label="Messages, oldest first">\n{turns}\n</ol>'
        if turns
        else '<p class="note">No messages were stored for this conversation.</p>'
    )
    count = len(transcript.turns)
    return _document(
        f"{channel} conversation handed to a person",
        f"""<header>
<h1>{channel} conversation handed to a person</h1>
<p class="note">What the {person.lower()} and the AI agent said before the handoff, oldest first.</p>
</header>
<main>
<section aria-labelledby="handoff">
<h2 id="handoff">The handoff</h2>
<dl>
{"".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)}
</dl>
</section>
<section aria-labelledby="transcript">
<h2 id="transcript">Transcript ({count} {"message" if count == 1 else "messages"})</h2>
{listing}
</section>
</main>
<footer>
<p class="note">The conversation is kept until {_time(transcript.kept_until)}; this link works until
{_time(link_expires_at)}, or until the conversation is gone, whichever comes first.</p>
</footer>""",
    )


def error_page(status: int, title: str, message: str, *, as_json: bool) -> dict[str, Any]:
    if as_json:
        return response(status, json.dumps({"status": status, "error": title, "message": message}), as_json=True)
    body = _document(title, f"<main>\n<h1>{escape(title)}</h1>\n<p>{escape(message)}</p>\n</main>")
    return response(status, body, as_json=False)


def _turn(turn: Turn, person: str, customer: str) -> str:
    if turn.role == "user":
        who, kind = person, "customer"
    elif turn.interrupted:
        who, kind = "AI agent (interrupted: the caller heard only this)", "agent"
    else:
        who, kind = "AI agent", "agent"
    text = escape(_clean(turn.text, customer)) or "<em>(nothing)</em>"
    return f'<li class="{kind}"><p class="who">{who}</p><p class="said">{text}</p></li>'


def _document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
{body}
</body>
</html>
"""


def _clean(text: str, customer: str) -> str:
    """No card numbers, and the customer's own number masked wherever and however it was written.

    Other numbers stay: a callback number or an order number the customer gave is what the human needs.
    """
    return mask_number_in(redact_pans(text), customer)


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else ""


def _time(epoch: int) -> str:
    if not epoch:
        return "an unknown time"
    shown = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    return f'<time datetime="{_iso(epoch)}">{shown}</time>'
