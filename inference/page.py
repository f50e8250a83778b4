"""The article page at ``/``: an HTML page, its script and stylesheet, served by the app itself.

The page and its files hold no data, so they are open even when API keys are configured
(``PAGE_PATHS`` joins ``/health`` among the paths ``ApiKeyAuth`` lets through): a browser
cannot send an ``Authorization`` header when it navigates, and the page asks for the key
itself before it calls the API. Only the files named in ``FILES`` are served, each with
a Content-Security-Policy that allows nothing but this origin and no inline script or style,
so text shown by the page can never run as code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

STATIC = Path(__file__).resolve().parent / "static"

#: The files under ``/static/``, with their media types; any other name is a 404.
FILES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: The paths open without an API key.
PAGE_PATHS: tuple[str, ...] = ("/", *(f"/static/{name}" for name in FILES))

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load, so that a new release of the page is never mixed with an old script.
    "Cache-Control": "no-cache",
}


def page_router() -> APIRouter:
    """``GET /`` (the page) and ``GET /static/{name}`` (its files); not part of the OpenAPI schema.

    >>> sorted(route.path for route in page_router().routes)
    ['/', '/static/{name}']
    """
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)

    @router.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        media_type = FILES.get(name)
        if media_type is None:  # a fixed list: no directory listing, no path ever built from the request
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)

    return router
