"""The declared seams between driver modules are the only way across them.

Each check reads the source (ast) of the modules on one side of a seam and
fails on any use of the other side beyond what the seam declares: the
Postgres flows (streams, transaction) against ``postgres.channel.Channel``,
the Postgres pool and ``connect`` against the connection's public members,
both driver pools against the multiplexer's public members (the one hot-path
exception is written once, in ``drivers.poolfront.finish_shared``).
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
