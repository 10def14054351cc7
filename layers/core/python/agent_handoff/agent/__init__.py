"""The AI agent: one turn of conversation over a pluggable LLM provider, and the escalation policy.

May import: the foundation (errors, handoff) and storage's plain records. Never a channel or wiring.
"""
