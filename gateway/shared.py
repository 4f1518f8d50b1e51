"""What several gateway processes share through Redis: who is alive, change notices, and one leader.

Every process has a random id and a heartbeat key (`<ns>:proc:<id>`, refreshed every few seconds, kept for
`PROC_TTL_S`). Amounts a process holds in shared counters (wallet holds, pending charges, requests in
flight) are stored per process as absolute values (`h:<id>`, `p:<id>`, `c:<id>` fields), so a process
that dies stops counting once its heartbeat lapses, and a process that was paused writes its values again.

Change notices go out on one pub/sub channel; each process applies the others' notices at once, and
reloads everything periodically as the safety net for a notice that was missed.

The namespace is the deployment's id, a random value kept in the database's settings (`deployment_id`),
so deployments sharing one Redis keep apart, and a database made anew never inherits stale counters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import gevent
import redis

from gateway.scripts import Scripts

log = logging.getLogger("relayhouse.shared")
PROC_TTL_S = 60
HEARTBEAT_S = 5.0


class Shared:
    def __init__(self, redis_url: str, deployment_id: str) -> None:
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3)
        self._fast = Scripts(redis_url) if redis_url.startswith("redis://") else None
        self.ns = "rh:" + deployment_id
        self.proc = os.urandom(6).hex()
        self._greenlets: list[gevent.Greenlet] = []
        self._on_lapse: list[Callable[[], None]] = []

    def script(self, source: str) -> Callable[[list[str], list], Any]:
        """A Lua script as a function of (keys, args); the relay's own scripts take the lean caller."""
        if self._fast is not None:
            fast, sha = self._fast, self._fast.register(source)
            return lambda keys, args: fast(sha, keys, args)
        slow = self.redis.register_script(source)
        return lambda keys, args: slow(keys=keys, args=args)

    @property
    def channel(self) -> str:
        return f"{self.ns}:changes"

    def key(self, *parts: object) -> str:
        return ":".join([self.ns, *map(str, parts)])

    @property
    def alive_prefix(self) -> str:
        return f"{self.ns}:proc:"

    # -- liveness ------------------------------------------------------------------------------------
    def beat(self) -> None:
        """Refresh this process's heartbeat; if it had lapsed, the others dropped this process's shared
        amounts: write them again."""
        existed = self.redis.set(self.alive_prefix + self.proc, 1, ex=PROC_TTL_S, get=True)
        if existed is None:
            for push in self._on_lapse:
                push()

    def on_lapse(self, push: Callable[[], None]) -> None:
        self._on_lapse.append(push)

    def _beat_forever(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat to Redis failed")
            gevent.sleep(HEARTBEAT_S)

    # -- change notices -----------------------------------------------------------------------------
    def publish(self, message: str) -> None:
        try:
            self.redis.publish(self.channel, f"{self.proc} {message}")
        except redis.RedisError:
            log.exception("could not publish %r; the other processes see it at their next reload", message)

    def _subscribe(self) -> redis.client.PubSub:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        return pubsub

    def _listen_forever(self, apply: Callable[[str], None], pubsub: redis.client.PubSub | None) -> None:
        while True:
            try:
                pubsub = pubsub or self._subscribe()
                for item in pubsub.listen():
                    sender, _, message = item["data"].decode().partition(" ")
                    if sender != self.proc:
                        try:
                            apply(message)
                        except Exception:
                            log.exception("could not apply the change %r", message)
            except Exception:
                log.warning("lost the change notices from Redis; listening again in 1 s", exc_info=True)
                gevent.sleep(1)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
                pubsub = None
            try:
                apply("all")  # notices may have been missed meanwhile
            except Exception:
                log.exception("could not reload after losing the change notices")

    # -- one process at a time ----------------------------------------------------------------------
    def lead(self, role: str, ttl_s: float) -> bool:
        """Take or keep the named role for `ttl_s`; True when this process holds it."""
        name = self.key("leader", role)
        ttl = max(1, int(ttl_s))
        try:
            if self.redis.set(name, self.proc, nx=True, ex=ttl):
                return True
            if (self.redis.get(name) or b"").decode() == self.proc:
                self.redis.expire(name, ttl)
                return True
        except redis.RedisError:
            log.exception("could not reach Redis to elect the %s", role)
        return False

    def start(self, apply: Callable[[str], None]) -> None:
        """Subscribe before returning: the caller then reloads, so no change can fall between the two."""
        self.beat()
        pubsub = self._subscribe()
        self._greenlets = [
            gevent.spawn(self._beat_forever),
            gevent.spawn(self._listen_forever, apply, pubsub),
        ]

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)
        if self._fast is not None:
            self._fast.close()
        try:
            self.redis.delete(self.alive_prefix + self.proc)
        except redis.RedisError:
            pass


# The Lua helpers below sum the per-process fields of a hash whose process is still alive, and drop the
# fields of processes whose heartbeat lapsed.
LUA_SUM = """
local function alive_sum(key, prefix, kinds)
  local fields = redis.call('HGETALL', key)
  local sum = 0
  for i = 1, #fields, 2 do
    local f = fields[i]
    local kind = string.sub(f, 1, 2)
    if kinds[kind] then
      if redis.call('EXISTS', prefix .. string.sub(f, 3)) == 1 then
        sum = sum + tonumber(fields[i + 1])
      else
        redis.call('HDEL', key, f)
      end
    end
  end
  return sum
end
"""
