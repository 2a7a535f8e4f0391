"""A Confluent Schema Registry as small as the producers and consumers need: a real HTTP(S)
server on 127.0.0.1 speaking the REST calls the registry client makes.

- ``POST /subjects/{subject}?normalize=..`` looks a schema up under a subject
  (404 with error code 40401 for an unknown subject, 40403 for an unknown schema);
- ``POST /subjects/{subject}/versions`` registers one (the same text keeps its id);
- ``GET /schemas/ids/{id}`` returns one.

Each request is recorded with its method, path and ``Authorization`` header;
with ``user_info`` set, a request without those basic credentials gets 401.
``ssl_context`` serves HTTPS (a server-side ``ssl.SSLContext``).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    authorization: str | None


def basic(user_info: str) -> str:
    """The ``Authorization`` header value of ``user:password``."""
    return "Basic " + base64.b64encode(user_info.encode()).decode()


class FakeSchemaRegistry:
    """Start with ``with FakeSchemaRegistry() as sr:``; ``sr.url`` is its base URL."""

    def __init__(self, *, user_info: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self._auth = basic(user_info) if user_info else None
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        #: schema text -> id; subject -> schema texts registered under it, in order
        self._ids: dict[str, int] = {}
        self._subjects: dict[str, list[str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- state ---------------------------------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (what an operator does beforehand); its id."""
        key = _canonical(schema)
        with self._lock:
            sid = self._ids.setdefault(key, len(self._ids) + 1)
            versions = self._subjects.setdefault(subject, [])
            if key not in versions:
                versions.append(key)
            return sid

    def versions(self, subject: str) -> int:
        with self._lock:
            return len(self._subjects.get(subject, []))

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if method is None or r.method == method]

    # -- serving -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeSchemaRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                registry._handle(self, "GET")

            def do_POST(self) -> None:
                registry._handle(self, "POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self._ssl is not None:
            server.socket = self._ssl.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-schema-registry",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        auth = h.headers.get("Authorization")
        with self._lock:
            self.requests.append(Request(method, parts.path, parts.query, auth))
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else {}
        if self._auth is not None and auth != self._auth:
            return _reply(h, 401, {"error_code": 401, "message": "Unauthorized"})
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        if method == "POST" and len(segments) == 3 and segments[::2] == ["subjects", "versions"]:
            sid = self.register(segments[1], body["schema"])
            return _reply(h, 200, {"id": sid})
        if method == "POST" and len(segments) == 2 and segments[0] == "subjects":
            return self._lookup(h, segments[1], body["schema"])
        if method == "GET" and len(segments) == 3 and segments[:2] == ["schemas", "ids"]:
            with self._lock:
                text = next((s for s, i in self._ids.items() if str(i) == segments[2]), None)
            if text is None:
                return _reply(h, 404, {"error_code": 40403, "message": "Schema not found"})
            return _reply(h, 200, {"schema": text})
        return _reply(h, 404, {"error_code": 404, "message": "Not found"})

    def _lookup(self, h: BaseHTTPRequestHandler, subject: str, schema: str) -> None:
        key = _canonical(schema)
        with self._lock:
            versions = self._subjects.get(subject)
            if versions is None:
                return _reply(h, 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
            if key not in versions:
                return _reply(h, 404, {"error_code": 40403, "message": "Schema not found"})
            answer = {"subject": subject, "id": self._ids[key], "version": versions.index(key) + 1,
                      "schema": key}
        _reply(h, 200, answer)


def _canonical(schema: str) -> str:
    """The registry compares schemas parsed, not as text."""
    return json.dumps(json.loads(schema), separators=(",", ":"), sort_keys=True)


def _reply(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
