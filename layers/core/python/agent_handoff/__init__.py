"""Core of the AI-agent-to-human handoff product: importable and testable without AWS.

Layering: handlers (functions/) -> services (sms, dispatch, agent) -> adapters (store,
studio, providers). Services never read os.environ; `wiring` builds them from Settings.
"""

import logging

# The parent of every core logger: handlers hand it their Powertools configuration.
logging.getLogger(__name__).addHandler(logging.NullHandler())
