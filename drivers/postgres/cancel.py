"""CancelRequest: asks the server to cancel what a backend runs now.

The request goes on a new short connection (plaintext, as libpq's PQcancel
sends it; the server answers by closing it), carrying the backend's pid and
secret key from BackendKeyData.  A failure is logged, not raised: the caller
(a timeout or a cancelled task) has already decided to give up on the query.
"""
from __future__ import annotations

import asyncio
import logging

from . import messages as m

log = logging.getLogger("ringleader.drivers.postgres")


class _CancelWire(asyncio.Protocol):
    def __init__(self):
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(None)


async def send_cancel(loop, address: tuple[str, int], pid: int, key: bytes,
                      timeout: float) -> None:
    host, port = address
    tr = None
    try:
        async with asyncio.timeout(timeout):
            if host.startswith("/"):
                tr, pr = await loop.create_unix_connection(_CancelWire, f"{host}/.s.PGSQL.{port}")
            else:
                tr, pr = await loop.create_connection(_CancelWire, host, port)
            tr.write(m.cancel_request(pid, key))
            await pr.closed
    except (OSError, TimeoutError) as e:
        log.warning("postgres CancelRequest failed: %r", e)
    finally:
        if tr is not None and not loop.is_closed():
            tr.close()
