"""The SMS channel: one inbound message -> one agent turn -> TwiML, and the hold after a handoff.

May import: agent, storage, webhooks and the foundation. Never voice, delivery or wiring.
"""
