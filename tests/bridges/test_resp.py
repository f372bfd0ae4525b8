"""The bridge's RESP2 reply parser: every reply shape, split at any byte."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import BusyLoadingError, NoPermissionError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from atlas_events.bridges._resp import HAS_HIREDIS, HiredisReader, RespReader, pack_command


class ChunkedSocket:
    """Hands out pre-recorded bytes a few at a time, like a slow network."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk
        self.pos = 0

    def recv(self, size: int) -> bytes:
        out = self.data[self.pos : self.pos + min(size, self.chunk)]
        self.pos += len(out)
        return out


def _encode(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    return b"*%d\r\n" % len(value) + b"".join(_encode(v) for v in value)


values = st.recursive(
    st.none() | st.binary(max_size=40) | st.integers(-(2**40), 2**40),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=40,
)


@given(replies=st.lists(values, min_size=1, max_size=5), chunk=st.integers(1, 64))
def test_any_reply_split_anywhere_parses_back(replies: list[Any], chunk: int) -> None:
    """Bulk strings (with CRLF inside), ints, nils, nested arrays; one reply after another."""
    wire = b"".join(_encode(r) for r in replies)
    reader = RespReader(ChunkedSocket(wire, chunk))  # type: ignore[arg-type]
    assert [reader.read() for _ in replies] == replies


def test_errors_are_returned_typed_and_loading_raises() -> None:
    """-ERR comes back as an exception object; -LOADING means the link is not usable."""
    wire = b"-NOGROUP no such group\r\n-NOPERM denied\r\n+OK\r\n*-1\r\n-LOADING busy\r\n"
    reader = RespReader(ChunkedSocket(wire, 3))  # type: ignore[arg-type]
    first = reader.read()
    assert isinstance(first, ResponseError)
    assert str(first).startswith("NOGROUP")
    assert isinstance(reader.read(), NoPermissionError)
    assert reader.read() == b"OK"
    assert reader.read() is None
    with pytest.raises(BusyLoadingError):
        reader.read()


def test_closed_socket_is_a_connection_error() -> None:
    """EOF in the middle of a reply is a link error, not a hang."""
    reader = RespReader(ChunkedSocket(b"*2\r\n$3\r\nab", 4))  # type: ignore[arg-type]
    with pytest.raises(RedisConnectionError, match="closed"):
        reader.read()


def test_pack_command() -> None:
    """Commands are RESP arrays of bulk strings."""
    assert pack_command("XACK", b"k", 7) == b"*3\r\n$4\r\nXACK\r\n$1\r\nk\r\n$1\r\n7\r\n"


@given(replies=st.lists(values, min_size=1, max_size=5), chunk=st.integers(1, 64))
def test_hiredis_reader_agrees_when_installed(replies: list[Any], chunk: int) -> None:
    """With hiredis installed the bridge parses with it, with RespReader's results."""
    if importlib.util.find_spec("hiredis") is None:
        assert not HAS_HIREDIS  # the pure-Python reader is the one in use
        return
    wire = b"".join(_encode(r) for r in replies)
    reader = HiredisReader(ChunkedSocket(wire, chunk))  # type: ignore[arg-type]
    assert HAS_HIREDIS
    assert [reader.read() for _ in replies] == replies
