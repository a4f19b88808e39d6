"""The chat page at ``/``: a small page (``static/``) that streams answers from ``/v1/chat/completions``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
# The chat page loads only its own script and style and talks only to this server.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def chat_page() -> FileResponse:
    """The page itself, under a Content-Security-Policy that allows nothing but this server."""
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                        "Cache-Control": "no-cache"})


def attach_router(app: FastAPI) -> None:
    """Serve the chat page at / and its script and style under /static."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
