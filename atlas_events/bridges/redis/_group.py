"""The node's consumer group: creation, trimming-loss accounting and the delivery counter.

Two Lua scripts run atomically on the server (public redis-py API:
``register_script``), so the group's cursor and its ``entries-read``
counter are read and written in one step while other nodes keep appending.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from redis.cluster import ClusterPipeline
from redis.exceptions import ResponseError

from ..._logging import log_extra
from ._config import RedisBridgeConfig
from ._transport import LINK_ERRORS, Client, close, command, open_client

__all__ = ["NO_GROUP", "UNKNOWN", "ConsumerGroup", "destroy_group"]

log = logging.getLogger("atlas_events.bridges.redis")

UNKNOWN: Final = -1
"""The loss cannot be counted now (the group's counter is unknown, or the
cursor sits inside the stream with entries behind it); it stays in the
group's counters and is counted later."""
NO_GROUP: Final = -2
"""The group does not exist (the broker lost it)."""

# Creates the group (unless it exists) at the start the options ask for, with
# an exact ENTRIESREAD wherever Redis cannot know it, so trimming losses can
# be counted from the first read. ARGV: group, mode ("$", "0", "last", "from"),
# N or start id. Returns 1 if it created the group, 0 if it existed.
_CREATE: Final = """
local key, group, mode, arg = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    for i = 1, #g, 2 do
      if g[i] == 'name' and g[i + 1] == group then return 0 end
    end
  end
end
local start, read = '$', nil
if mode == 'last' then
  local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', tonumber(arg) + 1)
  if #newest > tonumber(arg) then
    start = newest[#newest][1]
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'entries-added' then read = info[i + 1] - tonumber(arg) end
    end
  else
    start = '0'
  end
elseif mode == 'from' then
  start = arg
end
if read then
  redis.call('XGROUP', 'CREATE', key, group, start, 'MKSTREAM', 'ENTRIESREAD', read)
else
  redis.call('XGROUP', 'CREATE', key, group, start, 'MKSTREAM')
end
return 1
"""

# Counts the entries trimmed (or deleted) from behind the group's cursor
# since the last count, and moves the group's entries-read past them so each
# is counted once, by whichever process runs it (the count lives in Redis).
# Lost = entries-added - entries-read - entries still after the cursor.
_ACCOUNT: Final = """
local key, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return -2 end
local last, read
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local t = {}
  for i = 1, #g, 2 do t[g[i]] = g[i + 1] end
  if t['name'] == group then last = t['last-delivered-id']; read = t['entries-read'] end
end
if not last then return -2 end
if not read then return -1 end
local s = {}
local info = redis.call('XINFO', 'STREAM', key)
for i = 1, #info, 2 do s[info[i]] = info[i + 1] end
local function less(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local after
if s['length'] == 0 then
  after = 0
elseif less(last, s['first-entry'][1]) then
  after = s['length']
elseif s['last-generated-id'] == last then
  after = 0
else
  return -1
end
local lost = s['entries-added'] - read - after
if lost > 0 then
  redis.call('XGROUP', 'SETID', key, group, last, 'ENTRIESREAD', read + lost)
end
return lost
"""


class ConsumerGroup:
    """This node's consumer group on the namespace's stream.

    Args:
        client: The reader's client.
        config: The bridge's options.
        group: The group (and consumer) name: the node id.
    """

    __slots__ = ("_account", "_create", "config", "group", "key")

    def __init__(self, client: Client, config: RedisBridgeConfig, group: str) -> None:
        self.config = config
        self.group = group
        self.key = config.stream_key
        self._create = client.register_script(_CREATE)
        self._account = client.register_script(_ACCOUNT)

    def create(self, client: Client, resume_at: str | None) -> bool:
        """Create the group unless it exists; ``True`` if it was created.

        Args:
            client: The client (or pipeline) to run on.
            resume_at: Re-create the group at this entry id (the broker lost
                it while this bridge ran), else start as the options say.
        """
        config = self.config
        if resume_at is not None:
            args: list[Any] = [self.group, "from", resume_at]
        elif config.replay_from is not None:
            args = [self.group, "from", config.replay_from]
        elif config.replay_last is not None:
            args = [self.group, "last", config.replay_last]
        else:
            args = [self.group, "$", ""]
        return bool(self._create(keys=[self.key], args=args, client=client))

    def account(self, client: Any) -> Any:
        """Count entries trimmed behind the cursor (on ``client``, or queued on a pipeline).

        The reply is the count (``>= 0``), :data:`UNKNOWN` or :data:`NO_GROUP`.
        """
        if isinstance(client, ClusterPipeline):
            # redis-py's cluster pipeline refuses a script object's EVALSHA; the
            # raw command is the same. A NOSCRIPT reply (a node promoted since)
            # is logged, and the next session start, which runs the script
            # directly, loads it again.
            return command(client, "EVALSHA", self._account.sha, 1, self.key, self.group)
        return self._account(keys=[self.key], args=[self.group], client=client)


def destroy_group(config: RedisBridgeConfig, group: str, bus_name: str) -> None:
    """Delete the consumer group ``group`` (a generated node id's) on a connection of its own.

    Best effort: a failure is logged at INFO (the group then stays behind).
    """
    try:
        admin = open_client(config, reader=False)
    except (*LINK_ERRORS, ResponseError) as exc:
        _not_destroyed(group, bus_name, exc)
        return
    try:
        command(admin, "XGROUP", "DESTROY", config.stream_key, group)
    except (*LINK_ERRORS, ResponseError) as exc:
        _not_destroyed(group, bus_name, exc)
    finally:
        close(admin)


def _not_destroyed(group: str, bus_name: str, exc: BaseException) -> None:
    log.info(
        "bridge %s: could not delete its group: %s",
        group,
        exc,
        extra=log_extra(bus=bus_name, atlas_node=group),
    )
