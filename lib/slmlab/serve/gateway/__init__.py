"""The course's FastAPI gateway: an OpenAI-compatible chat API over any slmlab backend, with metrics and security."""
