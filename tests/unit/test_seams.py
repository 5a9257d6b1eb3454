"""The declared seams between driver modules are the only way across them.

Each check reads the source (ast) of the modules on one side of a seam and
fails on any use of the other side beyond what the seam declares: the
Postgres flows (streams, transaction) against ``postgres.channel.Channel``,
the Postgres pool and ``connect`` against the connection's public members,
both driver pools against the multiplexer's public members (the one hot-path
exception is written once, in ``drivers.poolfront.finish_shared``), and the
runtime's migration against ``runtime.contract.MovableTransport`` and the
migration loop protocols.
"""
import ast
import inspect
import typing

import pytest

from ringleader.drivers.postgres import channel, connect, pool, streams, transaction
from ringleader.drivers.redis import pool as redis_pool
from ringleader.drivers.postgres.channel import Channel
from ringleader.drivers.postgres.connection import Connection
from ringleader.drivers.postgres.session import State, _TRANSITIONS
from ringleader.runtime import contract, migration
from ringleader.runtime.epoll import EpollEventLoop
from ringleader.runtime.epoll_transport import EpollTransport
from ringleader.runtime.loop import RingEventLoop
from ringleader.runtime.transport import RingTransport

CHANNEL = {n for n in vars(Channel) if not n.startswith("_")}


def _uses(module, names: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, attribute) of every ``X.attr`` where X is one of ``names`` (a
    plain name, or ``self._conn`` / ``self.conn`` for "conn")."""
    tree = ast.parse(inspect.getsource(module))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if isinstance(v, ast.Name) and v.id in names:
            out.append((node.lineno, node.attr))
        elif (isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name)
              and v.value.id == "self" and v.attr in ("_conn", "conn") and "conn" in names):
            out.append((node.lineno, node.attr))
    return out


@pytest.mark.parametrize("module", [streams, transaction], ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_flows_use_only_the_channel(module):
    stray = [(ln, a) for ln, a in _uses(module, ("conn",)) if a not in CHANNEL]
    assert not stray, f"{module.__name__} uses members of the connection outside Channel: {stray}"


@pytest.mark.parametrize("module", [pool, connect], ids=["pool", "connect"])
def test_pool_and_connect_use_no_private_member(module):
    stray = [(ln, a) for ln, a in _uses(module, ("conn",)) if a.startswith("_")]
    assert not stray, f"{module.__name__} reaches into the connection: {stray}"


@pytest.mark.parametrize("module", [pool, redis_pool], ids=["postgres", "redis"])
def test_driver_pools_use_no_private_member_of_the_multiplexer(module):
    stray = [(ln, a) for ln, a in _uses(module, ("mux", "conn")) if a.startswith("_")]
    assert not stray, f"{module.__name__} reaches into the multiplexer or connection: {stray}"


def test_connection_implements_every_channel_member():
    missing = sorted(n for n in CHANNEL if not hasattr(Connection, n))
    assert not missing
    hints = typing.get_type_hints(Channel.prepare)
    assert hints["return"] is channel.Prepared


def test_lifecycle_transitions_only_move_forward():
    order = list(State)
    assert order == [State.NEW, State.STARTING, State.READY, State.CLOSED]
    for src, dsts in _TRANSITIONS.items():
        assert all(order.index(d) > order.index(src) for d in dsts), src
        if src is not State.CLOSED:
            assert State.CLOSED in dsts, f"{src} must be able to fail"
    assert _TRANSITIONS[State.CLOSED] == frozenset()


def _declared(*protocols) -> set[str]:
    """The member names ``protocols`` declare (methods, properties, attributes),
    with those of the protocols they extend."""
    names = set()
    for proto in protocols:
        for cls in proto.__mro__:
            if cls in (typing.Protocol, typing.Generic, object):
                continue
            names |= {n for n in vars(cls) if not n.startswith("_")}
            names |= set(getattr(cls, "__annotations__", {}))
    return names


MOVABLE = _declared(contract.MovableTransport)
LOOP_SIDES = _declared(contract.RingMigrationLoop, contract.CarryingLoop)


def _migration_strays(source: str) -> tuple[int, list]:
    """What ``source`` (migration.py's) uses of the transport it moves (``t`` /
    ``self.t``) and of its loops (``self.src`` / ``self.dst``) beyond the
    declared seam: (how many uses were seen, [(line, attribute) outside it])."""
    seen, stray = 0, []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant):
            # getattr(self.src, "carry") is a use of carry
            node = ast.Attribute(value=node.args[0], attr=node.args[1].value, lineno=node.lineno)
        if not isinstance(node, ast.Attribute):
            continue
        v, allowed = node.value, None
        if isinstance(v, ast.Name) and v.id == "t":
            allowed = MOVABLE
        elif isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "self":
            allowed = MOVABLE if v.attr == "t" else LOOP_SIDES if v.attr in ("src", "dst") else None
        if allowed is None:
            continue
        seen += 1
        # conn_id: only read for repr, with a default
        if node.attr.startswith("_") or (node.attr not in allowed and node.attr != "conn_id"):
            stray.append((node.lineno, node.attr))
    return seen, stray


def test_migration_uses_only_the_declared_seam():
    seen, stray = _migration_strays(inspect.getsource(migration))
    assert seen > 10   # the walk finds the uses at all
    assert not stray, f"migration.py uses transport/loop members outside runtime.contract: {stray}"


@pytest.mark.parametrize("old,new,reported", [
    ("self.dst.adopt_file(slot)", "self.dst._ring.files.adopt(slot)", "_ring"),
    ("t.detach_for_move()", "t._detach()", "_detach"),
    ("self.src.kick()", "self.src._kick()", "_kick"),
    ("self.src.kick()", "self.src.call_soon(print)", "call_soon"),
])
def test_seam_check_catches_a_use_outside_the_seam(old, new, reported):
    source = inspect.getsource(migration)
    assert old in source
    _, stray = _migration_strays(source.replace(old, new, 1))
    assert [a for _, a in stray] == [reported]


@pytest.mark.parametrize("cls,protocols", [
    (RingTransport, (contract.MovableTransport,)),
    (EpollTransport, (contract.MovableTransport,)),
    (RingEventLoop, (contract.RingMigrationLoop,)),
    (EpollEventLoop, (contract.CarryingLoop,)),
], ids=lambda x: getattr(x, "__name__", ""))
def test_both_backends_implement_the_migration_seam(cls, protocols):
    # worker_id and the counters are set in __init__: not class attributes
    instance_attrs = {"worker_id", "migrations_in", "migrations_out"}
    missing = sorted(n for n in _declared(*protocols) - instance_attrs if not hasattr(cls, n))
    assert not missing, f"{cls.__name__} lacks {missing}"


@pytest.mark.parametrize("cls,protocols", [
    (RingEventLoop, (contract.AcceptingLoop,)),
    (EpollEventLoop, (contract.WorkerLoop,)),
], ids=lambda x: getattr(x, "__name__", ""))
def test_both_backends_implement_the_worker_loop_seam(cls, protocols):
    missing = sorted(n for n in _declared(*protocols) - {"worker_id"} if not hasattr(cls, n))
    assert not missing, f"{cls.__name__} lacks {missing}"


def _private_loop_uses(source: str) -> list[tuple[int, str]]:
    """(line, attribute) of every private member used on a loop: ``loop._x``,
    ``w.loop._x``, ``self.loop._x``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        v = node.value
        if (isinstance(v, ast.Name) and v.id == "loop") or \
                (isinstance(v, ast.Attribute) and v.attr == "loop"):
            out.append((node.lineno, node.attr))
    return out


@pytest.mark.parametrize("name", ["supervisor.supervisor", "runtime.debug", "runtime.serving",
                                  "runtime.runtime"])
def test_runtime_supervisor_and_debug_use_no_private_member_of_a_loop(name):
    import importlib
    module = importlib.import_module(f"ringleader.{name}")
    stray = _private_loop_uses(inspect.getsource(module))
    assert not stray, f"{name} reaches into a worker loop (runtime.contract.WorkerLoop): {stray}"


def test_private_loop_use_check_catches_one():
    from ringleader.runtime import serving
    source = inspect.getsource(serving)
    assert "loop.in_owner_thread()" in source
    stray = _private_loop_uses(source.replace("loop.in_owner_thread()", "loop._owner == 1", 1))
    assert [a for _, a in stray] == ["_owner"]
