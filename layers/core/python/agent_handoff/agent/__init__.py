"""The AI agent: one turn of conversation over a pluggable LLM provider."""
