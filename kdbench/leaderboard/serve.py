"""Preview a built site on localhost with Python's own HTTP server."""

from __future__ import annotations

import functools
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves regular files under the site folder only: a symbolic link (which a built
    site never holds, but a copied or tampered folder may) answers 404, never its target."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        root = os.path.realpath(self.directory)
        path = self.translate_path(self.path)
        inside = os.path.realpath(path) == root or os.path.realpath(path).startswith(root + os.sep)
        if not inside or _through_link(root, path):
            self.send_error(404, "File not found")
            return None
        return super().send_head()


def _through_link(root: str, path: str) -> bool:
    """Whether any part of ``path`` below ``root`` is a symbolic link."""
    relative = os.path.relpath(path, root)
    current = root
    for part in Path(relative).parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            return True
    return False


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
