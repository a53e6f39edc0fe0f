"""A stand-in for the Hugging Face hub in the tests: a threaded HTTP server on 127.0.0.1 (a free port) that answers
the requests huggingface_hub's hf_hub_download makes, for files the test puts there. Nothing leaves the machine.

What hf_hub_download needs (huggingface_hub/file_download.py): a HEAD request to
`{HF_ENDPOINT}/{prefix}{repo_id}/resolve/{revision}/{path}` (prefix "datasets/" for dataset repositories, none for
models) whose reply carries X-Repo-Commit (the commit: the name of the cache's snapshot folder), ETag (the name of
the cached blob) and Content-Length; then a GET of the same URL for the content. A missing repository is a 404
with X-Error-Code: RepoNotFound, a missing file a 404 with X-Error-Code: EntryNotFound and the repository's
X-Repo-Commit (huggingface_hub caches the absence under that commit).
"""
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(
    r"^/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_REPO_TYPES = {None: "model", "datasets/": "dataset", "spaces/": "space"}


class FakeHub:
    """Serves repositories held in memory: `add(repo_id, path, data, repo_type)`; `requests` lists (method, URL
    path) of every request received, in order."""

    def __init__(self):
        self._repos: Dict[Tuple[str, str], Dict[str, bytes]] = {}
        self.requests: List[Tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, with_body=False)

            def do_GET(self):
                hub._answer(self, with_body=True)

            def log_message(self, format, *args):  # noqa: A002 - the base class's name; requests are kept instead
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo_id: str, path: str, data: bytes, repo_type: str = "model") -> None:
        self._repos.setdefault((repo_type, repo_id), {})[path] = data

    def commit(self, repo_id: str, repo_type: str = "model") -> str:
        """The repository's commit id: a hash of its content, so that any change makes a new snapshot."""
        digest = hashlib.sha1()
        for path, data in sorted(self._repos[(repo_type, repo_id)].items()):
            digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        return digest.hexdigest()

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _answer(self, request: http.server.BaseHTTPRequestHandler, with_body: bool) -> None:
        url_path = urlsplit(request.path).path
        self.requests.append((request.command, url_path))
        match = _RESOLVE.match(url_path)
        if match is None:
            return self._error(request, 404, None, "Not Found", {})
        repo_type = _REPO_TYPES[match["prefix"]]
        repo_id, revision, path = match["repo"], unquote(match["revision"]), unquote(match["path"])
        files = self._repos.get((repo_type, repo_id))
        if files is None:
            return self._error(request, 404, "RepoNotFound", "Repository not found", {})
        commit = self.commit(repo_id, repo_type)
        if revision not in ("main", commit):
            return self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {revision}", {})
        if path not in files:
            return self._error(request, 404, "EntryNotFound", f"{path} does not exist on \"main\"",
                               {"X-Repo-Commit": commit})
        data = files[path]
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(len(data)))
        request.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        request.send_header("X-Repo-Commit", commit)
        request.end_headers()
        if with_body:
            request.wfile.write(data)

    @staticmethod
    def _error(request, status: int, code, message: str, headers: Dict[str, str]) -> None:
        body = json.dumps({"error": message}).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        if code is not None:
            request.send_header("X-Error-Code", code)
        request.send_header("X-Error-Message", message)
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers, like a hung server or a proxy that drops traffic."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections complete in the kernel's backlog; nobody reads them
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def hub_env(endpoint: str, home: Path, **extra: str) -> Dict[str, str]:
    """The environment of a command that must talk to `endpoint` only: the user's own HF_* settings (token,
    offline mode, cache) removed, the cache under `home`, short time-outs, no proxy for the local server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_CACHE=str(Path(home) / "hub"),
               HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2", HF_HUB_DISABLE_TELEMETRY="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", OMP_NUM_THREADS="1")
    env.update(extra)
    return env
