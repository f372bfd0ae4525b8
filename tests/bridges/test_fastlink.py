"""FastLink on a real redis-server: replies to commands sent ahead are read in order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.exceptions import ResponseError

from atlas_events.bridges._resp import Conn, FastLink, pack_command

from ._support import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def link(redis_server: RedisServer) -> Iterator[FastLink]:
    client = redis_server.client(protocol=2, single_connection_client=True)
    conn = client.connection
    assert conn is not None
    yield FastLink(conn)
    client.close()


def _cmd(*args: bytes | str | int) -> bytes:
    return pack_command(*args)


def test_replies_to_commands_sent_ahead_are_skipped_and_errors_kept(link: FastLink) -> None:
    link.send_ahead(
        _cmd("SET", "fl:a", "1")
        + _cmd("INCR", "fl:nope-hash-type")
        + _cmd("HSET", "fl:a", "f", "v"),
        3,
    )
    link.send(_cmd("GET", "fl:a"))
    assert link.read() == b"1"  # not the reply to SET, INCR or HSET
    assert len(link.owed_errors) == 1
    assert isinstance(link.owed_errors[0], ResponseError)
    assert "WRONGTYPE" in str(link.owed_errors[0])
    link.owed_errors.clear()
    link.send(_cmd("DEL", "fl:a", "fl:nope-hash-type"))
    assert link.read() == 2


def test_settle_reads_what_is_owed_so_redis_py_can_use_the_connection(link: FastLink) -> None:
    link.send_ahead(_cmd("SET", "fl:b", "x") + _cmd("APPEND", "fl:b", "y"), 2)
    link.settle()
    assert link.owed_errors == []
    conn: Conn = link._conn
    conn.send_packed_command([_cmd("GET", "fl:b")])
    assert conn.read_response() == b"xy"  # the next reply on the wire is GET's


def test_a_new_connection_owes_nothing(link: FastLink) -> None:
    link.send_ahead(_cmd("PING"), 1)
    link.drop()
    link.send(_cmd("ECHO", "fresh"))
    assert link.read() == b"fresh"
    link.send_ahead(_cmd("PING"), 1)
    link._conn.disconnect()  # redis-py reconnects on the next use: a new socket
    link.send(_cmd("ECHO", "again"))
    assert link.read() == b"again"
