"""Serve the puzzle visualizer, a dataset folder and (optionally) a predictions file over local HTTP.

    python -m tools.serve_visualizer data/sudoku-extreme-1k-aug-1000
    python -m tools.serve_visualizer data/arc-aug-1000 preds=preds.npz port=8000   # (or --preds ... --port ...)

then open the printed address (http://127.0.0.1:8000/). The page is tools/visualizer.html; it also works
without this server (open the file and pick the dataset folder). The server answers byte-range requests, so
the page reads only the rows it shows, even from multi-gigabyte arrays. It listens on 127.0.0.1 only.
"""
from __future__ import annotations

import mimetypes
import os
import posixpath
import re
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydantic

from utils.cli import parse_overrides, run_command
from utils.errors import ConfigError

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(TOOLS_DIR, "visualizer.html")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class MountHandler(BaseHTTPRequestHandler):
    """GET/HEAD of files under mounted folders (URL prefix ending in '/') or single files (exact URL), with
    single byte ranges. `mounts` and `redirect_root` are set on a subclass by `make_server`."""

    mounts: Dict[str, str] = {}
    redirect_root: Optional[str] = None
    quiet = True

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)

    def _resolve(self, url_path: str) -> Optional[str]:
        path = posixpath.normpath(urllib.parse.unquote(url_path))
        if url_path.endswith("/") and not path.endswith("/"):
            path += "/"
        for prefix in sorted(self.mounts, key=len, reverse=True):
            target = self.mounts[prefix]
            if not prefix.endswith("/"):
                if path == prefix:
                    return target
                continue
            if not path.startswith(prefix):
                continue
            root = os.path.realpath(target)
            full = os.path.realpath(os.path.join(root, *[p for p in path[len(prefix):].split("/") if p]))
            if full != root and not full.startswith(root + os.sep):
                return None  # outside the mounted folder
            return full
        return None

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/" and self.redirect_root:
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self.redirect_root)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self._resolve(url.path)
        if path is None or not os.path.isfile(path):
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        size = os.path.getsize(path)
        start, end = 0, size  # end exclusive
        status = HTTPStatus.OK
        header = self.headers.get("Range")
        if header:
            parsed = self._parse_range(header, size)
            if parsed is None:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = parsed
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", mimetypes.guess_type(path)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not body:
            return
        with open(path, "rb") as f:
            f.seek(start)
            remaining = end - start
            try:
                while remaining > 0:
                    chunk = f.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page cancelled the request

    @staticmethod
    def _parse_range(header: str, size: int) -> Optional[Tuple[int, int]]:
        match = _RANGE.match(header.strip())
        if not match or (not match.group(1) and not match.group(2)):
            return None
        if not match.group(1):  # suffix: the last N bytes
            length = int(match.group(2))
            return (max(size - length, 0), size) if length > 0 and size > 0 else None
        start = int(match.group(1))
        end = min(int(match.group(2)) + 1, size) if match.group(2) else size
        if start >= size or end <= start:
            return None
        return start, end


def make_server(mounts: Dict[str, str], host: str = "127.0.0.1", port: int = 0,
                redirect_root: Optional[str] = None, quiet: bool = True) -> ThreadingHTTPServer:
    """An HTTP server (not started) serving `mounts` ({"/data/": folder, "/preds.npz": file, ...})."""
    handler = type("Handler", (MountHandler,), {"mounts": dict(mounts), "redirect_root": redirect_root,
                                                "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="visualizer-http", daemon=True)
    thread.start()
    return thread


def visualizer_mounts(data_dir: str, preds: Optional[str] = None) -> Tuple[Dict[str, str], str]:
    """Mounts for the page, a dataset and a predictions file, and the page's address with its query."""
    mounts = {"/visualizer.html": PAGE, "/data/": os.path.abspath(data_dir)}
    query = {"data": "/data/"}
    if preds is not None:
        name = "/preds/" + urllib.parse.quote(os.path.basename(preds))
        mounts[name] = os.path.abspath(preds)
        query["preds"] = name
    return mounts, "/visualizer.html?" + urllib.parse.urlencode(query, safe="/")


class ServeConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    data_dir: str = pydantic.Field(description="dataset folder (with train/ and/or test/); the first argument")
    preds: Optional[str] = pydantic.Field(None, description="predictions .npz/.npy from tools.export_predictions")
    port: int = pydantic.Field(8000, description="port on 127.0.0.1; 0 = any free one")
    verbose: bool = pydantic.Field(False, description="log every request")

    @pydantic.field_validator("port")
    @classmethod
    def _a_port(cls, port: int) -> int:
        if not 0 <= port <= 65535:
            raise ValueError(f"{port} is not a port: give 0-65535 (0 = any free one)")
        return port


def check_predictions_file(path: str) -> None:
    """A predictions file the page can read: an .npz of arrays or an .npy array (tools.export_predictions')."""
    if not os.path.isfile(path):
        raise ConfigError(f"predictions file {path} does not exist")
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)  # anything else reads as pickled data: refused
        if isinstance(loaded, np.lib.npyio.NpzFile):
            loaded.close()
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"predictions file {path} is not an .npz or .npy array file ({err}); make it with "
                          f"python -m tools.export_predictions") from None


def serve(argv: List[str]) -> None:
    config = parse_overrides(ServeConfig, argv, __doc__, positional="data_dir")
    if not os.path.isdir(config.data_dir):
        raise ConfigError(f"dataset folder {config.data_dir} does not exist")
    if config.preds is not None:
        check_predictions_file(config.preds)
    mounts, page = visualizer_mounts(config.data_dir, config.preds)
    try:
        server = make_server(mounts, port=config.port, redirect_root=page, quiet=not config.verbose)
    except OSError as err:
        raise ConfigError(f"cannot listen on 127.0.0.1:{config.port}: {err.strerror} (try port=0)") from None
    host, port = server.server_address[:2]
    print(f"visualizer: http://{host}:{port}{page}   (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(serve, argv)


if __name__ == "__main__":
    sys.exit(main())
