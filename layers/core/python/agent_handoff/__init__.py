"""Core of the AI-agent-to-human handoff product: importable and testable without AWS.

Folders by capability: `sms/`, `voice/`, `delivery/` (Studio, dead letters, redrive, release),
`agent/` (the LLM turn and escalation policy), `storage/` (DynamoDB), `webhooks/` (Twilio's
signatures and HTTP shapes). At the top: `config`, `errors`, `handoff` (TAC's payload),
`masking`, `log_context`, `observability`, `wiring` (the composition root: the only reader of
os.environ) and `webhook_handler` (the handlers' shared shape). Handlers (functions/) -> wiring
-> channels -> agent -> storage / webhooks -> foundation; tests/test_layering.py holds it.
"""

import logging

# The parent of every core logger: handlers hand it their Powertools configuration.
logging.getLogger(__name__).addHandler(logging.NullHandler())
