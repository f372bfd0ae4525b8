"""The connection seam: how the Redis bridge gets, interrupts and closes its clients.

Everything else in the package talks to Redis only through what redis-py's
``Redis`` and ``RedisCluster`` have in common: ``pipeline(transaction=False)``
with ``execute_command`` / ``execute(raise_on_error=False)``,
``register_script``, ``set_response_callback``, ``ping`` and ``close``. A
cluster client can be swapped in here (every key of a namespace shares one
hash tag, so one slot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeAlias, cast

import redis
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ._cluster import CLUSTER_OPTIONS, cluster_enabled, open_cluster
from ._config import RedisBridgeConfig

__all__ = [
    "LINK_ERRORS",
    "Client",
    "command",
    "interrupt",
    "make_backoff",
    "open_client",
    "raw_replies",
]

from ..._logging import log_extra

log = logging.getLogger("atlas_events.bridges.redis")

Client: TypeAlias = redis.Redis
"""The client type the bridge drives (a ``redis.RedisCluster`` offers the same calls)."""

LINK_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors that mean the link (not the command) failed."""

# Hot read commands whose redis-py reply callbacks rebuild every entry as a
# dict/tuples; the bridge reads the nested lists hiredis returns as they are.
_RAW_COMMANDS: Final = ("XREADGROUP", "XCLAIM", "XPENDING")


class _Commands(Protocol):
    def execute_command(self, *args: Any) -> Any: ...


def command(target: Any, *args: Any) -> Any:
    """``target.execute_command(*args)`` (a client or a pipeline; redis-py leaves it untyped)."""
    return cast("_Commands", target).execute_command(*args)


def _raw(response: Any, **_options: Any) -> Any:
    return response


def raw_replies(client: Client) -> None:
    """Turn redis-py's reply callbacks off for the hot read commands on ``client``."""
    for command in _RAW_COMMANDS:
        client.set_response_callback(command, _raw)


def make_backoff(config: RedisBridgeConfig) -> EqualJitterBackoff:
    """redis-py's equal-jitter exponential backoff between ``backoff_initial`` and ``backoff_max``.

    ``compute(n)`` is uniform in ``[d/2, d]`` with ``d = min(max, initial * 2**n)``.
    """
    return EqualJitterBackoff(cap=config.backoff_max, base=config.backoff_initial)


def open_client(
    config: RedisBridgeConfig,
    *,
    reader: bool,
    name: str | None = None,
    on_reconnect: Callable[[], None] | None = None,
) -> Client:
    """A client for one bridge thread, connected and answering ``PING``.

    ``config.cluster`` (or, if ``None``, the server's ``INFO cluster`` on the first connection)
    chooses redis-py's ``RedisCluster`` (see ``._cluster``) or a plain
    ``Redis``. The bridge retries on its own schedule, so redis-py's retries are off;
    a reader's socket timeout always exceeds its blocking read. ``name``
    is the connection's ``CLIENT SETNAME`` (``CLIENT LIST`` shows it).
    ``on_reconnect`` is called whenever redis-py opens a connection after
    the first one (it reconnects by itself when it finds an idle
    connection dead, e.g. after a broker restart, which is a link loss the
    bridge reports).

    Raises:
        redis.exceptions.ConnectionError, TimeoutError, ResponseError: The
            broker did not answer, or refused the connection.
    """
    options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
    if not config.url.startswith("unix:"):
        options["socket_keepalive"] = True  # a TCP option: redis-py's unix connection refuses it
    options.update(config.client_options)
    if reader:
        floor = config.block_ms / 1000 + 2.0
        timeout = options.get("socket_timeout")
        if timeout is not None and timeout < floor:
            options["socket_timeout"] = floor
    seen: set[tuple[str, int]] = set()

    def connected(conn: Any) -> None:
        # A second connection to the same server is redis-py reconnecting.
        node = (str(getattr(conn, "host", "")), int(getattr(conn, "port", 0) or 0))
        if node in seen and on_reconnect is not None:
            on_reconnect()
        seen.add(node)

    def plain_connected(conn: Any) -> None:
        conn.on_connect()
        connected(conn)

    options.update(protocol=2, decode_responses=False, retry=Retry(NoBackoff(), 0))
    if name is not None:
        options["client_name"] = name
    if config.cluster:
        return _open_cluster(config, options)
    plain = {k: v for k, v in options.items() if k not in CLUSTER_OPTIONS}
    client = redis.Redis.from_url(config.url, redis_connect_func=plain_connected, **plain)
    try:
        client.ping()
        # cluster=None: ask on the same connection (no probe of its own).
        if config.cluster is None and cluster_enabled(client):
            client.close()
            return _open_cluster(config, options)
    except BaseException:
        client.close()
        raise
    raw_replies(client)
    return client


def _open_cluster(config: RedisBridgeConfig, options: dict[str, Any]) -> Client:
    # No reconnect hook: redis-py's cluster client opens extra connections
    # to the same node on every slot-map refresh; a lost node shows as the
    # command's own ConnectionError instead.
    client = cast(Client, open_cluster(config.url, options, _ignore, raw_replies))
    try:
        client.ping()
    except BaseException:
        close(client)
        raise
    return client


def _ignore(_conn: Any) -> None:
    return None


def interrupt(client: Client | None) -> None:
    """Close ``client``'s sockets, also one a blocked read waits on (from any thread)."""
    if client is None:
        return
    try:
        if isinstance(client, RedisCluster):
            client.disconnect_connection_pools()
        else:
            client.connection_pool.disconnect()
    except (*LINK_ERRORS, ResponseError) as exc:  # pragma: no cover - closing a dead socket
        log.debug("closing a bridge connection: %s", exc, extra=log_extra())


def close(client: Client | None) -> None:
    """Close ``client`` and every socket it opened (quietly: it may be broken already).

    A cluster client's node connections are disconnected first:
    ``RedisCluster.from_url`` hands each node's ``Redis`` a connection pool
    of its own making, and ``Redis.close()`` closes only pools it made
    itself, so ``RedisCluster.close()`` alone leaves their sockets open
    until the garbage collector finds them.
    """
    if client is None:
        return
    try:
        if isinstance(client, RedisCluster):
            client.disconnect_connection_pools()
        client.close()
    except (*LINK_ERRORS, ResponseError) as exc:  # pragma: no cover - closing a dead socket
        log.debug("closing a bridge client: %s", exc, extra=log_extra())
