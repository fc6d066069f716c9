"""Preview a built site on localhost with Python's own HTTP server."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def preview_server(site: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for the files under ``site`` (``port=0`` picks a free port); call
    ``serve_forever()`` on it."""
    site = Path(site)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(
            f"{site} has no index.html; build the site first with kdbench leaderboard build"
        )
    handler = functools.partial(_QuietHandler, directory=str(site))
    return ThreadingHTTPServer((host, port), handler)
