"""gunicorn worker: uvicorn's ``UvicornWorker`` on ringleader's ring loop.

``gunicorn -k ringleader.runtime.gunicorn_worker.UvicornWorker app:app``
runs each gunicorn worker process as uvicorn's worker does, with
``ringleader.new_event_loop`` as its loop (one ring per process).  Everything
else (signals: the worker's SIGQUIT/SIGTERM handlers go through the ring
loop's ``add_signal_handler``; sockets inherited from the arbiter; timeouts)
is uvicorn's and gunicorn's.  Imports uvicorn and gunicorn: install them.
"""
from __future__ import annotations

from uvicorn.workers import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):
    CONFIG_KWARGS = {"loop": "ringleader:new_event_loop", "http": "auto"}
