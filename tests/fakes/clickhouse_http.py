"""A ClickHouse HTTP interface on 127.0.0.1 that records every request.

It answers what clickhouse-connect asks while it creates a client (``SELECT
version(), timezone()`` as TabSeparated, ``system.settings`` as Native),
``DESCRIBE TABLE`` of the tables it is given (Native), ``SELECT <integer>``
(Native), and inserts (any format: the body is kept as sent). Everything
else is refused with a ClickHouse error, so a test that reaches a query this
server does not model fails loudly instead of passing on a made-up answer.

Sessions behave as on a ClickHouse server: a request whose ``session_id`` is
in use by another request is refused with 373 SESSION_IS_LOCKED.

The request record (URL parameters, headers, body) is what the tests assert
on: what a real server would be asked to do.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: (name, value) of system.settings as a default profile shows them (all writable).
DEFAULT_SETTINGS: dict[str, str] = {
    "async_insert": "0",
    "wait_for_async_insert": "1",
    "async_insert_deduplicate": "0",
    "insert_deduplicate": "1",
    "insert_deduplication_token": "",
    "max_execution_time": "0",
    "readonly": "0",
    "date_time_input_format": "basic",
}

_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE)
_DESCRIBE = re.compile(r"^DESCRIBE\s+TABLE\s+(?:`?(\w+)`?\.)?`?(\w+)`?$", re.IGNORECASE)
_SELECT_INT = re.compile(r"^SELECT\s+(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    #: the body after its Content-Encoding is undone
    body: bytes
    #: the statement: the ``query`` parameter, else the body's first line or the whole body
    query: str
    #: the data after the statement (an insert's rows), as sent
    data: bytes


class ServerError(Exception):
    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code, self.name = code, name


# -- Native format (HTTP, no client_protocol_version: no block info, no custom serialisation) --

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(raw: bytes) -> bytes:
    return _varint(len(raw)) + raw


def native_block(columns: Sequence[tuple[str, str, Sequence[Any]]]) -> bytes:
    """One Native block of String, UInt8 and UInt64 columns."""
    rows = len(columns[0][2]) if columns else 0
    out = bytearray(_varint(len(columns)) + _varint(rows))
    for name, ch_type, values in columns:
        out += _string(name.encode()) + _string(ch_type.encode())
        if ch_type == "String":
            for v in values:
                out += _string(str(v).encode())
        elif ch_type == "UInt8":
            out += bytes(values)
        elif ch_type == "UInt64":
            out += struct.pack(f"<{len(values)}Q", *values)
        else:
            raise ValueError(f"native_block: no encoder for {ch_type}")
    return bytes(out)


class FakeClickHouse:
    """Start with ``with FakeClickHouse(...) as ch:``; ``ch.url`` is its HTTP address.

    ``tables``: table name -> [(column, type)] for ``DESCRIBE TABLE``.
    ``profile``: settings the user's profile changes (``{"async_insert": "1"}``).
    """

    def __init__(self, *, tables: Mapping[str, Sequence[tuple[str, str]]] | None = None,
                 profile: Mapping[str, str] | None = None, version: str = "24.8.1.1",
                 timezone: str = "UTC") -> None:
        self.tables = {k: list(v) for k, v in (tables or {}).items()}
        self.settings = {**DEFAULT_SETTINGS, **(profile or {})}
        self.version = version
        self.timezone = timezone
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._busy_sessions: set[str] = set()
        self._meet: threading.Barrier | None = None
        self._selecting = 0
        #: the most ``SELECT <integer>`` queries that were being served at one time
        self.max_together = 0
        self._server: ThreadingHTTPServer | None = None

    # -- control --------------------------------------------------------------------------

    def hold_selects(self, parties: int, *, deadline_s: float = 30.0) -> None:
        """Answer no ``SELECT <integer>`` until ``parties`` of them are being served at once.

        A query that waits longer than ``deadline_s`` (the other never came) fails with
        159 TIMEOUT_EXCEEDED; a request refused meanwhile releases the waiting ones."""
        self._meet = threading.Barrier(parties, timeout=deadline_s)

    def lock_session(self, session_id: str) -> None:
        """Mark a session busy, as if another client's query were running in it."""
        with self._lock:
            self._busy_sessions.add(session_id)

    def inserts(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.query.upper().startswith("INSERT")]

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeClickHouse:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-clickhouse", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- answers --------------------------------------------------------------------------

    def answer(self, rec: Recorded) -> tuple[bytes, dict[str, str]]:
        session = rec.params.get("session_id")
        if session:
            with self._lock:
                if session in self._busy_sessions:
                    meet = self._meet
                    if meet is not None:
                        meet.abort()
                    raise ServerError(373, "SESSION_IS_LOCKED",
                                      f"Session {session} is locked by a concurrent client")
                self._busy_sessions.add(session)
        try:
            return self._answer(rec)
        finally:
            if session:
                with self._lock:
                    self._busy_sessions.discard(session)

    def _answer(self, rec: Recorded) -> tuple[bytes, dict[str, str]]:
        statement = rec.query.strip().rstrip(";").strip()
        m = _FORMAT.search(statement)
        fmt = m.group(1) if m else None
        sql = statement[: m.start()].strip() if m else statement
        upper = sql.upper()
        if upper.startswith("INSERT"):
            return b"", {}
        if sql == "SELECT version(), timezone()":
            return f"{self.version}\t{self.timezone}\n".encode(), {"X-ClickHouse-Format": "TabSeparated"}
        if fmt != "Native":
            raise ServerError(48, "NOT_IMPLEMENTED", f"this test server answers only Native here: {sql[:80]}")
        native = {"X-ClickHouse-Format": "Native"}
        if upper.startswith("SELECT NAME, VALUE, READONLY FROM SYSTEM.SETTINGS"):
            names = list(self.settings)
            return native_block([("name", "String", names),
                                 ("value", "String", [self.settings[n] for n in names]),
                                 ("readonly", "UInt8", [0] * len(names))]), native
        d = _DESCRIBE.match(sql)
        if d:
            table = d.group(2)
            if table not in self.tables:
                raise ServerError(60, "UNKNOWN_TABLE", f"Table {table} does not exist")
            cols = self.tables[table]
            empty = [""] * len(cols)
            described = [("name", "String", [c for c, _ in cols]), ("type", "String", [t for _, t in cols])]
            described += [(name, "String", empty) for name in (
                "default_type", "default_expression", "comment", "codec_expression", "ttl_expression")]
            return native_block(described), native
        s = _SELECT_INT.match(sql)
        if s:
            return self._select_int(int(s.group(1))), native
        raise ServerError(48, "NOT_IMPLEMENTED", f"this test server does not model: {sql[:80]}")

    def _select_int(self, n: int) -> bytes:
        with self._lock:
            self._selecting += 1
            self.max_together = max(self.max_together, self._selecting)
        try:
            meet = self._meet
            if meet is not None:
                try:
                    meet.wait()
                except threading.BrokenBarrierError:
                    raise ServerError(159, "TIMEOUT_EXCEEDED", "the other query never came") from None
            return native_block([(str(n), "UInt64", [n])])
        finally:
            with self._lock:
                self._selecting -= 1


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding (what clickhouse-connect compresses inserts with)."""
    encoding = encoding.lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(body))
    if encoding == "zstd":
        from backports import zstd

        return zstd.decompress(body)
    raise ServerError(36, "BAD_ARGUMENTS", f"this test server cannot decode Content-Encoding {encoding}")


def _chunks(rfile: Any) -> Iterator[bytes]:
    while True:
        size = int(rfile.readline().split(b";", 1)[0].strip(), 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        yield rfile.read(size)
        rfile.readline()


def _handler(server: FakeClickHouse) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                body = b"".join(_chunks(self.rfile))
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            query_id = str(uuid.uuid4())
            try:
                body = _decoded(body, self.headers.get("Content-Encoding") or "")
            except ServerError as exc:
                self._error(exc, query_id)
                return
            if url.path == "/ping":
                self._send(200, b"Ok.\n", {})
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            if "query" in params:
                query, data = params["query"], body
            elif body[:6].upper() == b"INSERT":
                head, _, data = body.partition(b"\n")
                query = head.decode()
            else:
                query, data = body.decode(errors="replace"), b""
            rec = Recorded(self.command, url.path, params, dict(self.headers.items()), body, query, data)
            with server._lock:
                server.requests.append(rec)
            query_id = params.get("query_id") or query_id
            try:
                out, headers = server.answer(rec)
            except ServerError as exc:
                self._error(exc, query_id)
                return
            self._send(200, out, {**headers, "X-ClickHouse-Query-Id": query_id,
                                  "X-ClickHouse-Timezone": server.timezone,
                                  "X-ClickHouse-Summary": json.dumps({"written_rows": "0"})})

        def _error(self, exc: ServerError, query_id: str) -> None:
            text = f"Code: {exc.code}. DB::Exception: {exc}. ({exc.name}) (version {server.version})\n"
            self._send(500, text.encode(), {"X-ClickHouse-Exception-Code": str(exc.code),
                                            "X-ClickHouse-Query-Id": query_id})

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
