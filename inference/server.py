"""Running the app in a process: uvicorn, graceful shutdown, and a start-up that can fail."""

from __future__ import annotations

import logging

from inference.app import Loader, create_app
from inference.settings import Settings

log = logging.getLogger("claimlens.server")


class ServerDidNotStart(RuntimeError):
    """The server stopped during start-up (e.g. the model could not be loaded)."""


def run_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    loader: Loader | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting, finish in-flight requests, and return
    within ``settings.shutdown_timeout_s``.

    Raises ``ServerDidNotStart`` when start-up failed: the model did not load, or the port
    was taken. uvicorn picks uvloop and httptools when they are installed (both are
    dependencies): they cut the per-request cost of the event loop and HTTP parsing.

    >>> run_server(Settings(model_dir="models/quickstart"), port=8000)  # doctest: +SKIP
    """
    import uvicorn

    app = create_app(settings, loader)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:
        if server.started:
            raise
    # uvicorn exits with a bare status when start-up fails: our caller gets the reason instead.
    if not server.started:
        why = getattr(app.state, "startup_error", None) or "the log above says why"
        raise ServerDidNotStart(f"the server did not start on {host}:{port}: {why}")
