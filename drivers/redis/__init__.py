"""ringleader.drivers.redis: a Redis client on the calling worker's ring.

``connect(url)`` gives one :class:`Connection`; ``Pool(url, ...)`` a pool that
also runs commands itself.  Both speak RESP2 or RESP3 (``?protocol=3``), with
auto-pipelining, typed helpers, pipelines, MULTI/EXEC, pub/sub and scripts.
Layers: :mod:`.protocol` (sans-I/O RESP), :mod:`.url`, :mod:`.connection`
(asyncio Protocol on the running loop), :mod:`.commands`, :mod:`.pipeline`,
:mod:`.pubsub`, :mod:`.pool` (the pool).  Errors: :mod:`.errors`.  Needs the
``redis`` extra (hiredis): ``pip install 'ringleader[redis]'``.

    pool = Pool("redis://:secret@localhost:6379/0?protocol=3", max_size=20)
    async with pool:
        await pool.set("k", "v", ex=10)
        async with pool.acquire() as conn:
            await conn.watch("k")
            tx = conn.transaction()
            tx.set("k", "w").incr("n")
            await tx.execute()
"""
from ...extras import require

require("hiredis", "redis", "ringleader.drivers.redis")
from .pool import READ_ONLY, Pool  # noqa: E402
from .commands import Script
from .connection import Connection, connect
from .errors import (ConnectionError, InterfaceError, PipelineNotExecuted, PoolClosed,
                     PoolTimeout, ProtocolError, RedisError, ReplyError, TimeoutError,
                     WatchError)
from .pipeline import Pipeline
from .pubsub import Message, PubSub
from .url import ConnectParams, parse_url

__all__ = [
    "connect", "Pool", "Connection", "Pipeline", "PubSub", "Message", "Script",
    "ConnectParams", "parse_url", "READ_ONLY",
    "RedisError", "ReplyError", "ConnectionError", "TimeoutError", "ProtocolError",
    "InterfaceError", "WatchError", "PipelineNotExecuted", "PoolTimeout", "PoolClosed",
]
