"""Redis Cluster for the bridge: detecting a cluster behind a URL, opening redis-py's client.

The bridge drives a ``redis.cluster.RedisCluster`` exactly like a plain
client (pipelines, scripts, ``ping``); redis-py follows ``MOVED`` and
``ASK`` redirects and refreshes its slot map (from any node it knows) when
a node fails or a slot moves. Its own retries stay off: the bridge retries
on its own schedule (:func:`~._transport.make_backoff`), so a primary's
failover shows as a short ``BRIDGE_DISCONNECTED``/``BRIDGE_RECONNECTED``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError

from ._config import CLUSTER_OPTIONS, RedisBridgeConfig

__all__ = [
    "CLUSTER_OPTIONS",
    "cluster_enabled",
    "for_each_node",
    "is_cluster",
    "open_cluster",
    "wait_replicas",
]

log = logging.getLogger("atlas_events.bridges.redis")


def is_cluster(url: str, options: Mapping[str, Any]) -> bool:
    """Whether the server at ``url`` runs in cluster mode (``INFO cluster``: ``cluster_enabled:1``).

    One short-lived plain connection; see :func:`cluster_enabled`.

    Raises:
        redis.exceptions.ConnectionError, TimeoutError: The server did not
            answer, or refused the connection (authentication included).
    """
    plain = {k: v for k, v in options.items() if k not in CLUSTER_OPTIONS}
    plain.pop("redis_connect_func", None)
    plain.pop("client_name", None)
    probe = redis.Redis.from_url(url, **plain)
    try:
        return cluster_enabled(probe)
    finally:
        probe.close()


def cluster_enabled(client: redis.Redis) -> bool:
    """Whether ``client``'s server runs in cluster mode (``INFO cluster``).

    A server that refuses ``INFO`` (an ACL user without it) counts as a
    single server: on a cluster such a user needs ``cluster=True``.

    Raises:
        redis.exceptions.ConnectionError, TimeoutError: The link failed.
    """
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except ResponseError:
        return False


def open_cluster(
    url: str,
    options: Mapping[str, Any],
    on_connect: Callable[[Any], None],
    prepare_node: Callable[[redis.Redis], None],
) -> RedisCluster:
    """redis-py's cluster client seeded from ``url`` (any node of the cluster).

    Args:
        url: Any node's URL; the client discovers the others (``CLUSTER SLOTS``).
        options: Client options; ``retry`` becomes the cluster client's own
            retry policy, the rest go to every node's connections.
        on_connect: Called with each new connection after redis-py set it up.
        prepare_node: Applied to every node's ``Redis`` client before its
            first reply is parsed (the cluster client parses a reply with the
            node's client, then with its own callbacks).

    Raises:
        redis.exceptions.ConnectionError: No node answered, or the nodes do
            not form a usable cluster (not in cluster mode, slots not
            covered, a ``db`` other than 0); the bridge retries it like any
            link failure and ``start()`` reports it.
        redis.exceptions.TimeoutError: A node did not answer in time.
    """
    settings = dict(options)
    retry = settings.pop("retry", None)
    settings.pop("redis_connect_func", None)
    built: list[RedisCluster] = []  # empty while the constructor discovers the nodes

    def connected(conn: Any) -> None:
        # RedisCluster.on_connect already ran conn.on_connect(); a node that
        # joined since (a promoted replica) gets prepared here, before its
        # first command is parsed.
        if built:
            for_each_node(built[0], prepare_node)
        on_connect(conn)

    try:
        client = RedisCluster.from_url(url, retry=retry, redis_connect_func=connected, **settings)
    except RedisClusterException as exc:  # no node reachable, slots not covered, not a cluster
        raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
    built.append(client)
    for_each_node(client, prepare_node)
    return client


def for_each_node(client: RedisCluster, apply: Callable[[redis.Redis], None]) -> None:
    """Call ``apply`` on the ``Redis`` client of every node ``client`` knows (and has opened)."""
    for node in client.get_nodes():  # type: ignore[no-untyped-call]
        node_client = node.redis_connection
        if node_client is not None:
            apply(node_client)


def wait_replicas(client: Any, config: RedisBridgeConfig, node_id: str) -> int:
    """``WAIT replica_acks timeout`` on the connection that just wrote the stream.

    A single thread drives ``client`` and redis-py's pools hand back the
    connection used last, so the ``WAIT`` covers that thread's last write.
    On a cluster it goes to the stream's primary (``target_nodes``), not to
    every primary as redis-py routes a keyless ``WAIT``.

    Returns:
        How many replicas confirmed.

    Raises:
        redis.exceptions.ConnectionError, TimeoutError: The primary is gone
            (the caller writes the batch again).
    """
    wanted, timeout_ms = config.replica_acks, int(config.replica_timeout * 1000)
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(config.stream_key)  # type: ignore[no-untyped-call]
        reply = client.execute_command("WAIT", wanted, timeout_ms, target_nodes=node)  # type: ignore[no-untyped-call]
        confirmed = int(reply)
    else:
        confirmed = int(client.execute_command("WAIT", wanted, timeout_ms))
    if confirmed < wanted:
        log.warning(
            "bridge %s: %d of %d replicas confirmed a batch within %.1fs",
            node_id, confirmed, wanted, config.replica_timeout,
        )  # fmt: skip
    return confirmed
