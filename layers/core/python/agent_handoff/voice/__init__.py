"""The voice channel: answering a call with ConversationRelay, every WebSocket frame, routing a live call.

May import: agent, storage, webhooks and the foundation. Never sms, delivery or wiring.
"""
