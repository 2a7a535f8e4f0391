"""ClickHouse's HTTP interface, read-only, for the embedded store.

One OS process may open an embedded ClickHouse (chdb) directory, and that
process is the running pipeline. So the pipeline serves the subset of
ClickHouse's HTTP interface that clients use, and any ClickHouse client
(clickhouse-connect, curl, Grafana's ClickHouse data source) reads the live
store through it:

- ``GET /ping`` and ``GET /replicas_status`` answer ``Ok.``;
- ``GET /?query=...`` and ``POST /`` (the query in the body, optionally
  prefixed by a ``query`` parameter), with ``database``, ``default_format``,
  ``query_id`` and ``param_<name>`` (query parameters) as ClickHouse takes
  them; a ``FORMAT`` clause in the query wins over ``default_format``
  (``TabSeparated`` by default);
- the response compressed as the client negotiates it (``Accept-Encoding``
  with ``enable_http_compression=1``: gzip, deflate, lz4, zstd);
- errors as ClickHouse sends them: ``Code: N. DB::Exception: ...`` with the
  ``X-ClickHouse-Exception-Code`` header.

Safety (docs/query-server.md): queries run on a chdb session of their own
with ``readonly = 1``, which ClickHouse enforces itself: no INSERT, ALTER,
DROP, CREATE, SYSTEM or SET, no table function or engine that reaches files,
URLs, other servers or executables, and no setting can be changed, the
limits included (``max_execution_time``, ``max_result_rows``,
``max_result_bytes``). A setting sent as a URL parameter is refused the same
way unless it equals the session's value. The server listens on loopback;
another interface needs a password (``--http-password``), checked on every
request.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hmac
import ipaddress
import itertools
import json
import logging
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from perpstream.errors import ConfigError

log = logging.getLogger(__name__)

#: URL parameters of ClickHouse's HTTP interface that are not settings.
_NOT_SETTINGS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "user", "password", "quota_key", "buffer_size",
    "wait_end_of_query", "enable_http_compression", "http_zlib_compression_level",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "role",
})
#: Largest query body accepted.
MAX_BODY_BYTES = 1 << 20
#: The statements served: reads. readonly=1 alone would let some others through
#: (SYSTEM STOP MERGES), and a SELECT ... INTO OUTFILE writes a file in-process.
_READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN"})
_TOKEN = re.compile(
    r"""\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`"""
    r"""|(?P<word>[A-Za-z_][A-Za-z_0-9]*)|.""",
    re.S,
)


def keywords(sql: str) -> list[str]:
    """The bare words of a query, upper-cased, outside literals, quoted names and comments."""
    return [m.group("word").upper() for m in _TOKEN.finditer(sql) if m.group("word")]


def read_only_problem(sql: str) -> str | None:
    """Why a query is not a plain read, or None."""
    words = keywords(sql)
    if not words or words[0] not in _READ_STATEMENTS:
        return "only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN queries are served here (read-only)"
    for a, b in itertools.pairwise(words):
        if a == "INTO" and b == "OUTFILE":
            return "INTO OUTFILE is not served here (read-only)"
    return None
_FORMAT_AT_END = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_CONTENT_TYPES = {
    "JSON": "application/json; charset=UTF-8", "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8", "CSV": "text/csv; charset=UTF-8",
    "CSVWithNames": "text/csv; charset=UTF-8", "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNames": "text/tab-separated-values; charset=UTF-8",
    "TSVWithNames": "text/tab-separated-values; charset=UTF-8",
}
#: ClickHouse error codes answered with a 4xx status (the client's fault).
_STATUS = {62: 400, 36: 400, 47: 404, 60: 404, 81: 404, 164: 403, 497: 403, 516: 401, 307: 413}


@dataclass(frozen=True)
class Limits:
    """What one query may cost. Enforced by ClickHouse (readonly keeps them fixed)."""

    max_execution_time_s: int = 30
    max_result_rows: int = 10_000_000
    max_result_bytes: int = 512 * 1024 * 1024
    max_memory_usage: int = 2 * 1024 * 1024 * 1024

    def settings(self) -> dict[str, Any]:
        # readonly last: once it is set, the session's own SETs are refused too
        return {
            "max_execution_time": self.max_execution_time_s,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
            "readonly": 1,
        }


class QueryError(Exception):
    """A ClickHouse-shaped error: its code and its ``Code: N. DB::Exception: ...`` text."""

    def __init__(self, code: int, name: str, message: str, *, text: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.text = text or f"Code: {code}. DB::Exception: {message}. ({name})"

    def body(self) -> bytes:
        return self.text.encode("utf-8", "replace") + b"\n"

    @classmethod
    def from_engine(cls, exc: Exception) -> QueryError:
        """The engine's own error text, passed through as ClickHouse server would send it."""
        text = str(exc).strip()
        m = re.match(r"Code: (\d+)\. DB::Exception: ", text)
        if m:
            return cls(int(m.group(1)), "", text, text=text)
        return cls(1002, "UNKNOWN_EXCEPTION", text or type(exc).__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:  # "" (every interface) and names other than localhost are not loopback
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _compressor(accept: str) -> tuple[str, Callable[[bytes], bytes]] | None:
    offered = [p.split(";")[0].strip().lower() for p in accept.split(",") if p.strip()]
    for name in offered:
        if name == "gzip":
            return name, lambda b: gzip.compress(b, compresslevel=3)
        if name == "deflate":
            return name, lambda b: zlib.compress(b, 3)
        if name == "lz4":
            with contextlib.suppress(ImportError):
                import lz4.frame  # local: optional package

                return name, lz4.frame.compress
        if name == "zstd":
            with contextlib.suppress(ImportError):
                from backports import zstd  # local: optional package

                return name, zstd.compress
    return None


class ReadOnlyQueries:
    """Runs client queries on a read-only chdb session of the process's store."""

    def __init__(self, dsn: str, limits: Limits | None = None) -> None:
        import clickhouse_connect  # local: ~0.17 s of `perpstream --help` (python -X importtime)

        self.limits = limits or Limits()
        self._client = clickhouse_connect.get_client(dsn=dsn, settings=self.limits.settings())
        self._lock = threading.Lock()
        rows = self._client.query("SELECT name, value FROM system.settings").result_rows
        self._session = {str(n): str(v) for n, v in rows}

    def run(self, query: str, *, database: str | None, default_format: str,
            settings: Mapping[str, str], params: Mapping[str, str]) -> tuple[bytes, str]:
        for key, value in settings.items():
            if self._session.get(key) != str(value):
                raise QueryError(164, "READONLY",
                                 f"Cannot modify '{key}' setting in readonly mode")
        stripped = query.strip().rstrip(";").strip()
        if not stripped:
            raise QueryError(62, "SYNTAX_ERROR", "Empty query")
        problem = read_only_problem(stripped)
        if problem is not None:
            raise QueryError(164, "READONLY", problem)
        m = _FORMAT_AT_END.search(stripped)
        fmt = m.group(1) if m else default_format
        sql = stripped if m else f"{stripped}\nFORMAT {fmt}"
        with self._lock:
            try:
                # the handle keeps the database it was last told: say it every time
                self._client.database = database or "default"
                body = self._client.raw_query(sql, parameters=dict(params) or None)
            except QueryError:
                raise
            except Exception as exc:
                raise QueryError.from_engine(exc) from None
        return body, fmt

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


class QueryServer:
    """The HTTP front: ``start()`` binds (a free port when ``port`` is taken), ``stop()`` ends it."""

    def __init__(self, queries: ReadOnlyQueries, *, host: str = "127.0.0.1", port: int = 8123,
                 password: str | None = None) -> None:
        if not _is_loopback(host) and not password:
            raise ConfigError(
                f"http_host: serving queries on {host!r} (not loopback) needs a password "
                "(PERPSTREAM_HTTP_PASSWORD; not a flag, so it stays out of the process list)"
            )
        self.queries = queries
        self.host = host
        self.requested_port = port
        self._password = password
        self._server: ThreadingHTTPServer | None = None
        self.requests = 0
        self.refused = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> QueryServer:
        handler = _handler(self)
        try:
            self._server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        except OSError:
            log.info("query port taken; using a free one", extra={"port": self.requested_port})
            self._server = ThreadingHTTPServer((self.host, 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="query-http", daemon=True).start()
        log.info("ClickHouse HTTP interface (read-only) listening", extra={"url": self.url})
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.queries.close()

    def authorised(self, headers: Mapping[str, str], params: Mapping[str, str]) -> bool:
        if not self._password:
            return True
        given = params.get("password") or headers.get("X-ClickHouse-Key") or ""
        auth = headers.get("Authorization", "")
        if not given and auth.lower().startswith("basic "):
            with contextlib.suppress(Exception):
                given = base64.b64decode(auth[6:]).decode().partition(":")[2]
        return hmac.compare_digest(given.encode(), self._password.encode())


def _handler(server: QueryServer) -> type[BaseHTTPRequestHandler]:
    # Long: the request handler class, defined here so its methods close over the server; each
    # method is short (docs/query-server.md).
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "perpstream"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._error(QueryError(307, "TOO_MANY_BYTES", f"query body over {MAX_BODY_BYTES} bytes"))
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "lz4":
                    import lz4.frame  # local: optional package

                    body = lz4.frame.decompress(body)
                elif encoding == "zstd":
                    from backports import zstd  # local: optional package

                    body = zstd.decompress(body)
                elif encoding not in ("", "identity"):
                    raise QueryError(36, "BAD_ARGUMENTS", f"unsupported Content-Encoding {encoding!r}")
            except QueryError as exc:
                self._error(exc)
                return
            except Exception as exc:
                self._error(QueryError(36, "BAD_ARGUMENTS", f"cannot decompress the body: {exc}"))
                return
            self._serve(body)

        def _serve(self, body: bytes) -> None:
            server.requests += 1
            url = urlsplit(self.path)
            if url.path in ("/ping", "/replicas_status"):
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if url.path not in ("/", "/query"):
                self._error(QueryError(0, "NOT_FOUND", f"no handler for {url.path}"), status=404)
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            if not server.authorised(self.headers, params):  # type: ignore[arg-type]
                self._error(QueryError(516, "AUTHENTICATION_FAILED", "password is incorrect"))
                return
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                self._error(QueryError(36, "BAD_ARGUMENTS", "the query is not UTF-8"))
                return
            query = "\n".join(p for p in (params.get("query", ""), text) if p)
            settings = {k: v for k, v in params.items()
                        if k not in _NOT_SETTINGS and not k.startswith("param_")}
            qparams = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
            query_id = params.get("query_id") or str(uuid.uuid4())
            started = time.perf_counter()
            try:
                out, fmt = server.queries.run(
                    query, database=params.get("database") or self.headers.get("X-ClickHouse-Database"),
                    default_format=params.get("default_format") or self.headers.get("X-ClickHouse-Format")
                    or "TabSeparated",
                    settings=settings, params=qparams,
                )
            except QueryError as exc:
                server.refused += 1
                log.info("query refused", extra={"code": exc.code, "error": str(exc)[:200],
                                                 "query": query[:200], "query_id": query_id})
                self._error(exc, query_id=query_id)
                return
            headers = {
                "Content-Type": _CONTENT_TYPES.get(fmt, "application/octet-stream"),
                "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Summary": json.dumps({
                    "result_bytes": str(len(out)),
                    "elapsed_ns": str(int((time.perf_counter() - started) * 1e9)),
                }),
            }
            if params.get("enable_http_compression") in ("1", "true"):
                chosen = _compressor(self.headers.get("Accept-Encoding", ""))
                if chosen is not None:
                    headers["Content-Encoding"] = chosen[0]
                    out = chosen[1](out)
            self._send(200, out, headers)

        def _error(self, exc: QueryError, *, status: int | None = None, query_id: str = "") -> None:
            headers = {"Content-Type": "text/plain; charset=UTF-8",
                       "X-ClickHouse-Exception-Code": str(exc.code)}
            if query_id:
                headers["X-ClickHouse-Query-Id"] = query_id
            self._send(status or _STATUS.get(exc.code, 500), exc.body(), headers)

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
