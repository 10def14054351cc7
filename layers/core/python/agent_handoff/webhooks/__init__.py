"""Twilio's HTTP edge: signatures on webhooks and on the WebSocket handshake, forms, HTTP responses.

May import: the foundation (errors) only. Everything that decides what to answer lives above it.
"""
