"""Loopback stand-ins for what is not ours: Studio, Twilio's REST API, @connections, an LLM.

May import: each other's loopback server only. Tests and the local stack both use them.
"""
