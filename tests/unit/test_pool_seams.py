"""The declared seams between the pool, the multiplexer and the drivers
(ringleader.drivers.contract): each side is an instance of its Protocol, and
no module reaches past it into the other's private attributes."""
import ast
import asyncio
import pathlib

import ringleader
from ringleader.drivers.contract import Multiplexer, SharedPool
from ringleader.drivers.mux import Mux
from ringleader.drivers.pool import Pool
from ringleader.testing import run

DRIVERS = pathlib.Path(ringleader.__file__).parent / "drivers"


def _private_reads(path: pathlib.Path, names: set[str]) -> list[str]:
    """``x._attr`` where x is a name (or ``self.<name>``) in ``names``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) \
                    and base.value.id == "self":
                base_name = base.attr
            elif isinstance(base, ast.Name):
                base_name = base.id
            else:
                continue
            if base_name in names:
                found.append(f"{path.name}:{node.lineno}: {base_name}.{node.attr}")
    return found


def test_the_multiplexer_uses_only_the_shared_pool_seam():
    assert _private_reads(DRIVERS / "mux.py", {"pool"}) == []


def test_the_drivers_use_only_the_multiplexer_seam():
    for path in (DRIVERS / "postgres" / "pool.py", DRIVERS / "redis" / "client.py"):
        assert _private_reads(path, {"mux"}) == [], path


def test_pool_and_mux_implement_their_protocols():
    async def connect():
        raise AssertionError("not called")

    async def main():
        pool = Pool(connect, min_size=0, max_size=2)
        assert isinstance(pool, SharedPool)
        mux = Mux(pool, asyncio.get_running_loop(), depth=4, idle_after=1.0)
        assert isinstance(mux, Multiplexer)
        assert pool.wanted_back() == 0
        await pool.close()
    run(main())
