"""A real local Redis Cluster for the tests: redis-server processes on free loopback ports.

:class:`LocalCluster` starts ``primaries * (1 + replicas)`` ``redis-server``
processes with ``--cluster-enabled yes`` (each with its own directory and
``nodes.conf``), joins them with ``redis-cli --cluster create
--cluster-replicas N --cluster-yes``, waits until every node reports
``cluster_state:ok`` and agrees on the slot map, and kills them all on
:meth:`LocalCluster.stop`. It can kill a primary (its replica takes over)
and move slots while traffic runs (``redis-cli --cluster reshard``).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from ._support import REDIS_SERVER

REDIS_CLI = shutil.which("redis-cli")

__all__ = ["REDIS_CLI", "ClusterError", "ClusterNodeProcess", "LocalCluster"]


class ClusterError(RuntimeError):
    """The local cluster did not reach the state a helper waited for."""


def free_cluster_port(taken: set[int]) -> int:
    """A port ``p`` such that ``p`` and its cluster bus port ``p + 10000`` are free now.

    Redis refuses data ports above 55535 (the bus port would overflow).
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 55535)
        if port in taken or port + 10000 in taken:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        taken.update((port, port + 10000))
        return port
    raise ClusterError("no free port pair for a cluster node")


class ClusterNodeProcess:
    """One ``redis-server --cluster-enabled yes`` child process.

    Args:
        directory: Its data directory (``nodes.conf``, AOF, log).
        port: Its port (the cluster bus uses ``port + 10000``).
        node_timeout_ms: ``cluster-node-timeout``: how long a primary may be
            unreachable before its replica is promoted.
    """

    def __init__(self, directory: Path, port: int, node_timeout_ms: int) -> None:
        self.directory = directory
        self.port = port
        self.node_timeout_ms = node_timeout_ms
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the process (a restart keeps ``nodes.conf``) and wait for ``PING``."""
        if REDIS_SERVER is None:  # pragma: no cover - guarded by the fixtures
            raise ClusterError("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # Let a replica be promoted however long it was cut off.
                "--cluster-replica-validity-factor", "0",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        with self.client(socket_connect_timeout=0.2, socket_timeout=1) as client:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    tail = self.log_tail()
                    raise ClusterError(f"cluster node {self.port} did not start:\n{tail}")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the process (no shutdown, no final fsync) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def client(self, **options: Any) -> redis.Redis:
        """A plain (non-cluster) client of this one node."""
        options.setdefault("socket_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def info(self, section: str) -> dict[str, Any]:
        with self.client(socket_timeout=2) as client:
            return dict(client.info(section))

    def cluster_info(self) -> dict[str, str]:
        with self.client(socket_timeout=2) as client:
            raw = client.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"


class LocalCluster:
    """A Redis Cluster of local processes: ``primaries`` primaries, each with ``replicas``.

    Args:
        directory: Parent of the nodes' data directories.
        primaries: Primaries (each owns an equal share of the 16384 slots). From
            3 the cluster is made by ``redis-cli --cluster create``; 1 or 2
            are set up by hand with the same commands (it refuses fewer).
        replicas: Replicas per primary.
        node_timeout_ms: ``cluster-node-timeout`` in ms; failover takes about
            this long plus an election (a second or two here).
    """

    def __init__(
        self, directory: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError(f"need primaries >= 1 and replicas >= 0, got {primaries}, {replicas}")
        self.directory = directory
        self.primaries = primaries
        self.replicas = replicas
        taken: set[int] = set()
        self.nodes = [
            ClusterNodeProcess(directory / f"node{i}", free_cluster_port(taken), node_timeout_ms)
            for i in range(primaries * (1 + replicas))
        ]

    @property
    def urls(self) -> list[str]:
        """``redis://127.0.0.1:port/0`` for every node, in start order."""
        return [f"redis://{n.address}/0" for n in self.nodes]

    @property
    def url(self) -> str:
        """One node's URL (any node works for a cluster client)."""
        return self.urls[0]

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, create the cluster and wait until it is ok everywhere."""
        if REDIS_CLI is None:  # pragma: no cover - guarded by the fixtures
            raise ClusterError("redis-cli is not installed")
        try:
            for node in self.nodes:
                node.start()
            if self.primaries < 3:  # redis-cli --cluster create refuses fewer than 3
                self._create_by_hand()
                self.wait_ok(timeout)
                return
            self._cli(
                "--cluster", "create", *(n.address for n in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
                timeout=timeout,
            )  # fmt: skip
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()

    def client(self, **options: Any) -> RedisCluster:
        """A redis-py cluster client seeded with every live node."""
        options.setdefault("socket_timeout", 5)
        seeds = [ClusterNode("127.0.0.1", n.port) for n in self.nodes if n.alive]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=seeds, **options)

    def live(self) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.alive]

    def by_port(self, port: int) -> ClusterNodeProcess:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def owner(self, key: str) -> ClusterNodeProcess:
        """The live primary that serves ``key``'s slot, as the live nodes see it."""
        slot = key_slot(key.encode())
        for node in self.live():
            for start, end, primary in self._slot_ranges(node):
                if start <= slot <= end:
                    return self.by_port(primary)
        raise ClusterError(f"no live node serves slot {slot}")

    def primary_nodes(self) -> list[ClusterNodeProcess]:
        """The live primaries, in port order."""
        ports: set[int] = set()
        for node in self.live():
            ports |= {p for _, _, p in self._slot_ranges(node)}
            break
        return sorted((self.by_port(p) for p in ports), key=lambda n: n.port)

    def wait_ok(
        self, timeout: float = 30.0, nodes: Iterable[ClusterNodeProcess] | None = None
    ) -> None:
        """Wait until every live node says ``cluster_state:ok``, they agree on the slot map
        and every replica's link to its primary is up (so writes from now on replicate)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                members = list(nodes) if nodes is not None else self.live()
                states = {n.cluster_info().get("cluster_state") for n in members}
                maps = {tuple(sorted(self._slot_ranges(n))) for n in members}
                covered = sum(e - s + 1 for s, e, _ in next(iter(maps), ()))
                synced = all(_replica_synced(n.info("replication")) for n in members)
                if states == {"ok"} and len(maps) == 1 and covered == 16384 and synced:
                    return
                last = f"states={states} maps={len(maps)} covered={covered} synced={synced}"
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise ClusterError(f"cluster not ok after {timeout}s: {last}")

    def wait_replicated(self, key: str, timeout: float = 30.0) -> None:
        """Wait until every replica of ``key``'s primary acknowledged all its writes so far.

        The primary's ``INFO replication`` lists each replica's acknowledged
        offset (replicas acknowledge about once a second); ``WAIT`` through a
        cluster client is no substitute: it counts only the writes of the
        connection it happens to run on.
        """
        primary = self.owner(key)
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = primary.info("replication")
            target = last["master_repl_offset"]
            acked = [v["offset"] for k, v in last.items() if k.startswith("slave")]
            if len(acked) == self.replicas and min(acked, default=target) >= target:
                return
            time.sleep(0.05)
        raise ClusterError(f"replicas of {primary.address} not caught up in {timeout}s: {last}")

    def kill_primary_of(self, key: str) -> ClusterNodeProcess:
        """SIGKILL the primary serving ``key``; returns it (its replica takes over)."""
        victim = self.owner(key)
        victim.kill()
        return victim

    def wait_failover(self, key: str, victim: ClusterNodeProcess, timeout: float = 30.0) -> float:
        """Wait until a live primary other than ``victim`` serves ``key`` and the cluster is ok.

        Returns:
            Seconds waited.
        """
        began = time.monotonic()
        deadline = began + timeout
        while time.monotonic() < deadline:
            try:
                if self.owner(key) is not victim:
                    self.wait_ok(max(0.1, deadline - time.monotonic()))
                    return time.monotonic() - began
            except ClusterError:
                pass
            time.sleep(0.05)
        raise ClusterError(f"no failover of {victim.address} within {timeout}s")

    def reshard(
        self, key: str, to: ClusterNodeProcess, slots: int = 1, timeout: float = 60.0
    ) -> None:
        """Move ``key``'s slot, and ``slots - 1`` more of its owner's, to primary ``to``.

        ``redis-cli --cluster reshard`` chooses the slots it moves itself, so
        ``key``'s own slot (the one the tests need moved) is moved first
        with the same ``CLUSTER SETSLOT IMPORTING/MIGRATING``, ``MIGRATE``,
        ``SETSLOT NODE`` sequence ``redis-cli`` runs; the other slots go
        through ``redis-cli --cluster reshard``. Keys stay readable and
        writable throughout (clients follow ``ASK`` then ``MOVED``).
        """
        source = self.owner(key)
        if source is to:
            raise ValueError(f"{to.address} already serves {key!r}")
        self._move_slot(key_slot(key.encode()), source, to)
        if slots > 1:
            self._cli(
                "--cluster", "reshard", to.address,
                "--cluster-from", self._node_id(source),
                "--cluster-to", self._node_id(to),
                "--cluster-slots", str(slots - 1), "--cluster-yes",
                timeout=timeout,
            )  # fmt: skip
        self.wait_ok(timeout)

    def rebalance(self, timeout: float = 120.0) -> None:
        """``redis-cli --cluster rebalance``: spread the slots evenly over the primaries."""
        self._cli(
            "--cluster", "rebalance", self.live()[0].address, "--cluster-use-empty-masters",
            timeout=timeout,
        )  # fmt: skip
        self.wait_ok(timeout)

    # ----------------------------------------------------------------- internals

    def _create_by_hand(self) -> None:
        """What ``--cluster create`` does, for 1 or 2 primaries: slots, meet, replicate."""
        primaries = self.nodes[: self.primaries]
        per = 16384 // self.primaries
        for i, node in enumerate(primaries):
            first, last = i * per, 16383 if i == self.primaries - 1 else (i + 1) * per - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            with node.client() as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", seed.port)
        replicas = self.nodes[self.primaries :]
        deadline = time.monotonic() + 30
        for i, node in enumerate(replicas):
            primary_id = self._node_id(primaries[i % self.primaries])
            while True:
                try:
                    with node.client() as c:
                        c.execute_command("CLUSTER", "REPLICATE", primary_id)
                    break
                except redis.ResponseError:  # it does not know the primary yet
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def _move_slot(self, slot: int, source: ClusterNodeProcess, target: ClusterNodeProcess) -> None:
        """Migrate one slot key by key (the sequence ``redis-cli --cluster reshard`` runs)."""
        src_id, dst_id = self._node_id(source), self._node_id(target)
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                src.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 10_000, "KEYS", *keys
                )
            for node in (target, source):
                with node.client() as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for node in self.live():
            if node not in (source, target):
                # A replica refuses SETSLOT; it follows its primary.
                with node.client() as c, contextlib.suppress(redis.ResponseError):
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def _node_id(self, node: ClusterNodeProcess) -> str:
        with node.client() as c:
            raw = c.execute_command("CLUSTER", "MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    @staticmethod
    def _slot_ranges(node: ClusterNodeProcess) -> list[tuple[int, int, int]]:
        """``(first, last, primary port)`` for each slot range, as ``node`` sees the map."""
        with node.client(socket_timeout=2) as c:
            raw = c.execute_command("CLUSTER", "SHARDS")
        ranges: list[tuple[int, int, int]] = []
        for shard in raw:
            info = _pairs(shard)
            slots = list(info.get("slots", []))
            members = [_pairs(n) for n in info.get("nodes", [])]
            primaries = [
                n for n in members
                if _text(n.get("role")) == "master" and _text(n.get("health")) == "online"
            ]  # fmt: skip
            if not primaries or not slots:
                continue
            port = int(primaries[0]["port"])
            for i in range(0, len(slots), 2):
                ranges.append((int(slots[i]), int(slots[i + 1]), port))
        return ranges

    def _cli(self, *args: str, timeout: float) -> str:
        if REDIS_CLI is None:  # pragma: no cover - guarded by the fixtures
            raise ClusterError("redis-cli is not installed")
        done = subprocess.run([REDIS_CLI, *args], capture_output=True, timeout=timeout, check=False)
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0 or "[ERR]" in out:
            what = " ".join(args[:2])
            raise ClusterError(f"redis-cli {what} failed ({done.returncode}):\n{out[-3000:]}")
        return out


def _replica_synced(replication: dict[str, Any]) -> bool:
    """A primary, or a replica whose link is up and not loading a full sync."""
    if replication.get("role") != "slave":
        return True
    return replication.get("master_link_status") == "up" and not replication.get(
        "master_sync_in_progress"
    )


def _pairs(value: Any) -> dict[str, Any]:
    """A flat ``[k1, v1, k2, v2...]`` reply (RESP2 map) as a dict with str keys."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    items = list(value)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClusterAsServer:
    """A :class:`LocalCluster` where the bridge tests expect one ``RedisServer``.

    ``url`` is a replica's (a node that owns no slot, so every command of the
    bridge goes through a redirect first); ``client()`` is a cluster client.
    Used when ``ATLAS_TEST_CLUSTER=1`` runs the single-server bridge tests on
    a cluster.
    """

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.port = cluster.nodes[-1].port

    @property
    def url(self) -> str:
        return self.cluster.urls[-1]

    def client(self, **options: Any) -> RedisCluster:
        return self.cluster.client(**options)

    def kill(self) -> None:
        self.cluster.stop()
