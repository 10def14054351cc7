"""Core of the AI-agent-to-human handoff product: importable and testable without AWS.

Layering: handlers (functions/) -> services (sms, dispatch, agent) -> adapters (store,
studio, providers). Services never read os.environ; `wiring` builds them from Settings.
"""
