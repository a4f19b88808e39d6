"""Security that is not a server's: guardrails around a chat model and a secrets scan for notebooks."""
