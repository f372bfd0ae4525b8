"""Pipelined raw I/O for the bridge's hot paths (``XADD``, ``XREADGROUP``, ``XACK``).

redis-py's pure-Python reply parser costs several microseconds per reply
element, which caps a bridge at a few tens of thousands of events per
second. :class:`FastLink` sends pre-packed commands and parses RESP2 replies
with an incremental parser that does one ``find`` and one slice per element,
on the socket of a redis-py connection that redis-py connected (and
authenticated, and wrapped in TLS). Anything unusual (no such socket on a
future redis-py) falls back to the connection's own methods.
"""

from __future__ import annotations

import importlib
import socket
from typing import Any, Final, Protocol

from redis.exceptions import (
    BusyLoadingError,
    NoPermissionError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["HAS_HIREDIS", "FastLink", "RespReader", "pack_command"]

try:  # the C parser redis-py also uses, when installed (``pip install hiredis``)
    _hiredis: Any = importlib.import_module("hiredis")
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None

HAS_HIREDIS: Final = _hiredis is not None
"""Whether replies are parsed by hiredis (C) rather than :class:`RespReader`."""

_CRLF: Final = b"\r\n"
_RECV: Final = 256 * 1024
_ERRORS: Final[dict[str, type[ResponseError]]] = {
    "NOPERM": NoPermissionError,
    "READONLY": ReadOnlyError,
}


class Conn(Protocol):
    """The typed subset of ``redis.connection.Connection`` used here."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack_command(*args: bytes | str | int) -> bytes:
    """RESP2-encode one command."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(_bulk(arg))
    return b"".join(parts)


def _error(message: str) -> Exception:
    code = message.split(" ", 1)[0]
    if code == "LOADING":
        return BusyLoadingError(message)
    return _ERRORS.get(code, ResponseError)(message)


def _recv(sock: socket.socket) -> bytes:
    try:
        data = sock.recv(_RECV)
    except TimeoutError as exc:  # socket.timeout
        raise RedisTimeoutError("Timeout reading from the broker") from exc
    except OSError as exc:
        raise RedisConnectionError(f"Error while reading from the broker: {exc}") from exc
    if not data:
        raise RedisConnectionError("Connection closed by server.")
    return data


class HiredisReader:
    """:class:`RespReader`'s interface over ``hiredis.Reader``."""

    __slots__ = ("_reader", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = _hiredis.Reader(replyError=ResponseError)

    @property
    def sock(self) -> socket.socket:
        return self._sock

    def read(self) -> Any:
        reader = self._reader
        while True:
            value = reader.gets()
            if value is not False:
                if isinstance(value, ResponseError):
                    value = _error(str(value))
                    if isinstance(value, BusyLoadingError):
                        raise value
                return value
            reader.feed(_recv(self._sock))


class RespReader:
    """An incremental RESP2 reply parser over a socket.

    Error replies are *returned* as exception instances (like redis-py's
    parsers), so a pipeline can read every reply before deciding; except
    ``LOADING``, which means the whole link is not usable yet.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    @property
    def sock(self) -> socket.socket:
        return self._sock

    def _fill(self) -> None:
        data = _recv(self._sock)
        self._buf = self._buf[self._pos :] + data if self._pos < len(self._buf) else data
        self._pos = 0

    def read(self) -> Any:
        """Read one complete reply (nested arrays as lists, bulk strings as bytes)."""
        # One loop, locals only: this parses every entry a bridge receives.
        stack: list[list[Any]] = []
        sizes: list[int] = []
        buf = self._buf
        pos = self._pos
        find = buf.find
        value: Any
        while True:
            end = find(_CRLF, pos)
            if end < 0:
                self._pos = pos
                self._fill()
                buf, pos = self._buf, self._pos
                find = buf.find
                continue
            kind = buf[pos]
            if kind == 36:  # $ bulk string
                n = int(buf[pos + 1 : end])
                if n < 0:
                    value = None
                    pos = end + 2
                else:
                    stop = end + 2 + n
                    if stop + 2 > len(buf):
                        self._pos = pos
                        self._fill()
                        buf, pos = self._buf, self._pos
                        find = buf.find
                        continue
                    value = buf[end + 2 : stop]
                    pos = stop + 2
            elif kind == 42:  # * array
                n = int(buf[pos + 1 : end])
                pos = end + 2
                if n > 0:
                    stack.append([])
                    sizes.append(n)
                    continue
                value = None if n < 0 else []
            elif kind == 58:  # : integer
                value = int(buf[pos + 1 : end])
                pos = end + 2
            elif kind == 43:  # + simple string
                value = buf[pos + 1 : end]
                pos = end + 2
            elif kind == 45:  # - error
                value = _error(buf[pos + 1 : end].decode("utf-8", "replace"))
                pos = end + 2
            else:
                self._pos = pos
                raise RedisConnectionError(f"protocol error: unexpected reply type {chr(kind)!r}")
            while stack:
                top = stack[-1]
                top.append(value)
                if len(top) < sizes[-1]:
                    break
                value = stack.pop()
                sizes.pop()
            else:
                self._pos = pos
                if isinstance(value, BusyLoadingError):
                    raise value
                return value


class FastLink:
    """Sends packed commands and reads replies on one redis-py connection.

    Args:
        conn: A connection of a ``single_connection_client`` redis-py client.
            It is connected on first use (redis-py does the handshake).
    """

    __slots__ = ("_conn", "_owed", "_reader", "owed_errors")

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._reader: RespReader | HiredisReader | None = None
        self._owed = 0  # replies to commands sent ahead, not read yet
        self.owed_errors: list[Exception] = []
        """Error replies to commands sent with :meth:`send_ahead` (the caller clears it)."""

    def _socket(self) -> socket.socket | None:
        sock = getattr(self._conn, "_sock", None)
        if sock is None:
            self._conn.connect()
            sock = getattr(self._conn, "_sock", None)
        return sock if isinstance(sock, socket.socket) else None

    def send(self, payload: bytes) -> None:
        """Send pre-packed commands; link errors disconnect and raise."""
        sock = self._socket()
        if sock is None:  # pragma: no cover - redis-py without a ``_sock``
            self._reader = None
            self._conn.send_packed_command([payload], check_health=False)
            return
        reader = self._reader
        if reader is None or reader.sock is not sock:
            self._reader = HiredisReader(sock) if HAS_HIREDIS else RespReader(sock)
            self._owed = 0  # a new connection owes nothing
        try:
            sock.sendall(payload)
        except TimeoutError as exc:
            self.drop()
            raise RedisTimeoutError("Timeout writing to the broker") from exc
        except OSError as exc:
            self.drop()
            raise RedisConnectionError(f"Error while writing to the broker: {exc}") from exc

    def send_ahead(self, payload: bytes, replies: int) -> None:
        """Send ``replies`` commands whose replies are read later, not awaited now.

        Saves a round trip: the replies are read (error replies collected in
        :attr:`owed_errors`) before the reply to the next command, by
        :meth:`read`, or by :meth:`settle`.
        """
        self.send(payload)
        self._owed += replies

    def settle(self) -> None:
        """Read the replies still owed to :meth:`send_ahead` (before others use the link)."""
        while self._owed:
            self._owed -= 1
            reply = self._read_one()
            if isinstance(reply, Exception):
                self.owed_errors.append(reply)

    def read(self) -> Any:
        """Read the next reply; an error reply is returned, not raised."""
        if self._owed:
            self.settle()
        return self._read_one()

    def _read_one(self) -> Any:
        reader = self._reader
        if reader is None:  # pragma: no cover - the fallback path
            try:
                return self._conn.read_response()
            except ResponseError as exc:
                if isinstance(exc, BusyLoadingError):
                    raise
                return exc
        try:
            return reader.read()
        except (RedisConnectionError, RedisTimeoutError):
            self.drop()
            raise

    def drop(self) -> None:
        """Close the socket; the next :meth:`send` reconnects."""
        self._reader = None
        self._owed = 0
        self._conn.disconnect()
