"""Getting a handoff to a person: the stream outbox -> Studio, dead letters, redrive and release.

May import: storage, webhooks and the foundation. Never the agent, sms, voice or wiring.
"""
