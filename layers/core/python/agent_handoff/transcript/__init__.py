"""The transcript the human who takes over opens: a signed link checked, the conversation read, rendered.

May import: the foundation (transcript_link, masking, pan_redaction), storage and webhooks. Never the
agent, the channels or wiring.
"""
