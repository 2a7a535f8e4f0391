"""A static member that is stopped on purpose leaves its group at once.

librdkafka never sends LeaveGroup for a static member (KIP-345: a static
member that closes keeps its partitions until ``session.timeout.ms``, so that a
restart takes them back without a rebalance). That is right after a crash and
wrong after SIGTERM: a member scaled down or replaced by a redeploy would hold
its partitions, unconsumed, for the whole session timeout. So after a clean
``close()`` the runtime removes its own ``group.instance.id`` from the group
the way an admin client does (LeaveGroup v3 with an empty member id and the
instance id, sent to the group's coordinator): the group rebalances at once.
A member killed with SIGKILL sends nothing and is taken back by its restart
(docs/sink.md, "Restart recovery").

The two requests are written here by hand because no client library in use
exposes them (confluent-kafka's admin has no RemoveMembersFromConsumerGroup).
PLAINTEXT and SSL are supported; on a SASL cluster the member is left to its
session timeout, and says so.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

_FIND_COORDINATOR, _LEAVE_GROUP = 10, 13
_CLIENT_ID = "perpstream-leave"


class LeaveError(Exception):
    """The group could not be left (the caller logs it; the broker expires the member later)."""


def leave_group(config: Mapping[str, Any], group_id: str, instance_id: str, *, timeout: float = 5.0) -> None:
    """Remove static member ``instance_id`` from ``group_id``; :class:`LeaveError` when it cannot.

    ``config`` is the member's librdkafka config (bootstrap servers and security)."""
    protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
    if protocol.startswith("SASL"):
        raise LeaveError(f"not sent on a {protocol} cluster; the broker expires the member after its "
                         f"session timeout")
    tls = _tls_context(config) if protocol == "SSL" else None
    errors: list[str] = []
    for server in str(config.get("bootstrap.servers", "")).split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with _Connection(host, int(port), tls, timeout) as conn:
                coordinator = conn.find_coordinator(group_id)
            if coordinator == (host, int(port)):
                with _Connection(host, int(port), tls, timeout) as conn:
                    conn.leave(group_id, instance_id)
            else:
                with _Connection(*coordinator, tls, timeout) as conn:
                    conn.leave(group_id, instance_id)
            return
        except (OSError, ValueError, struct.error, LeaveError) as exc:
            errors.append(f"{server.strip()}: {exc}")
    raise LeaveError("; ".join(errors) or "no bootstrap server")


def _tls_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
    if config.get("ssl.certificate.location"):
        ctx.load_cert_chain(config["ssl.certificate.location"], config.get("ssl.key.location"),
                            config.get("ssl.key.password"))
    if config.get("ssl.endpoint.identification.algorithm") == "none":
        ctx.check_hostname = False
    return ctx


class _Connection:
    """One broker connection speaking two non-flexible request versions."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, timeout: float) -> None:
        self._host = host
        sock = socket.create_connection((host, port), timeout=timeout)
        self._sock: socket.socket = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self._correlation = 0

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def find_coordinator(self, group_id: str) -> tuple[str, int]:
        body = _string(group_id) + struct.pack(">b", 0)  # key type 0: a consumer group
        r = _Reader(self._call(_FIND_COORDINATOR, 1, body))
        r.int32()  # throttle
        error, message = r.int16(), r.nullable_string()
        node, host, port = r.int32(), r.string(), r.int32()
        if error:
            raise LeaveError(f"FindCoordinator error {error} ({message})")
        if node < 0:
            raise LeaveError("no coordinator for the group yet")
        return host, port

    def leave(self, group_id: str, instance_id: str) -> None:
        body = _string(group_id) + struct.pack(">i", 1) + _string("") + _string(instance_id)
        r = _Reader(self._call(_LEAVE_GROUP, 3, body))
        r.int32()  # throttle
        error = r.int16()
        members = [(r.string(), r.nullable_string(), r.int16()) for _ in range(r.int32())]
        if error:
            raise LeaveError(f"LeaveGroup error {error}")
        for _member, _instance, member_error in members:
            # 25 UNKNOWN_MEMBER_ID: the broker had already let it go; nothing to do
            if member_error not in (0, 25):
                raise LeaveError(f"LeaveGroup member error {member_error}")

    def _call(self, api_key: int, version: int, body: bytes) -> bytes:
        self._correlation += 1
        header = struct.pack(">hhi", api_key, version, self._correlation) + _string(_CLIENT_ID)
        request = header + body
        self._sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", self._read(4))[0]
        payload = self._read(size)
        if struct.unpack(">i", payload[:4])[0] != self._correlation:
            raise LeaveError("response out of order")
        return payload[4:]

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise LeaveError(f"{self._host} closed the connection (request version not supported?)")
            buf += chunk
        return bytes(buf)


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def _take(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self._data, self._pos)[0]
        self._pos += struct.calcsize(fmt)
        return value

    def int16(self) -> int:
        return int(self._take(">h"))

    def int32(self) -> int:
        return int(self._take(">i"))

    def nullable_string(self) -> str | None:
        n = self.int16()
        if n < 0:
            return None
        raw = self._data[self._pos:self._pos + n]
        self._pos += n
        return raw.decode()

    def string(self) -> str:
        return self.nullable_string() or ""
