/* ringleader.runtime._loopcore: the event loop's per-event path, compiled.
 *
 * What is here (everything a request/response pays for on every event):
 *
 *   Core    one per RingEventLoop.  run_once() is asyncio's _run_once: prune
 *           cancelled timers, flush the transports' writes, wait in the kernel
 *           (bounded by the first timer), dispatch the completions, move due
 *           timers to the ready queue and run the ready handles.  dispatch()
 *           takes completions off the CQ one at a time and routes each by
 *           user_data: a Stream's receive or send and a Watch's poll are
 *           handled here in C; any other handler (a Python callable in the
 *           loop's handler dict: sock_* futures, accepts, MSG_RING, ...) is
 *           called as handler(res, flags) or, when the completion took a
 *           provided buffer, handler(res, flags, bytes or None); user_data at
 *           or above TAG_BASE without a handler goes to on_message(ud, res).
 *           call_soon/call_at/call_later/create_future build asyncio's own
 *           Handle, TimerHandle and Future objects (slots filled directly) on
 *           asyncio's own ready deque and timer heap, so asyncio code that
 *           looks at them sees what it expects.
 *   Stream  the hot half of one RingTransport: the receive (multishot into the
 *           loop's provided-buffer ring, bytes handed straight to the
 *           protocol's data_received), the write buffer, the one in-flight
 *           send, the per-connection counters and the lifecycle state.
 *   Watch   one add_reader/add_writer registration (a one-shot poll re-armed
 *           after its callback ran).
 *
 * What is not here: anything that happens once per connection or less
 * (construction, close, pause/resume, EOF, errors, TLS, migration) and
 * asyncio's debug mode (its checks and slow-callback log stay asyncio's).
 * Those stay in Python, which this file calls back through a few named
 * methods of the transport (declared in runtime/contract.py).
 *
 * The SQE/CQE helpers are the uring binding's own (_helpers.c and
 * _resources.c are compiled in here as well), so both modules fill SQEs exactly the same way and share
 * the ring's C counters; the Python side passes the addresses of the cffi
 * structs together with the objects owning them (kept alive here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <poll.h>
#include "_helpers.c"
#include "_resources.c"

#define TAG_BASE (1ull << 56)

enum stream_state { ST_OPEN = 0, ST_CLOSING = 1, ST_LOST = 2, ST_DONE = 3 };
/* the write side: write_eof() moves OPEN -> EOF_PENDING (no more writes; the
 * shutdown waits for queued bytes), the SHUT_WR going out -> SHUT */
enum write_state { W_OPEN = 0, W_EOF_PENDING = 1, W_SHUT = 2 };

typedef struct {
    PyObject_HEAD
    struct rl_ring *r;
    struct rl_bufring *b;
    PyObject *owners;      /* (Ring, BufferRing): keep the C structs alive */
    /* The datagram endpoints' group of large buffers (set_bufring2), made when the
     * first one opens; its buffer ids are 32768.., the shared ring's 0.. */
    struct rl_bufring *b2;
    PyObject *owner2;
    PyObject *handlers;    /* dict: user_data -> callable or Stream */
    PyObject *keep;        /* Ring._keep: buffers held until an op's last CQE */
    PyObject *on_message;  /* callable(ud, res) for MSG_RING messages */
    PyObject *on_error;    /* callable(exc): the loop's exception handler */
    PyObject *dirty;       /* list of Streams with writes to flush */
    /* scheduling (set_scheduling): asyncio's ready queue and Handle objects */
    PyObject *loop;        /* the RingEventLoop (each Handle's _loop) */
    PyObject *ready;       /* loop._ready (collections.deque) */
    PyObject *ready_append, *ready_popleft;
    PyTypeObject *handle_type, *timer_type;  /* asyncio.Handle, asyncio.TimerHandle */
    PyObject *slow_call_soon;  /* BaseEventLoop.call_soon bound to the loop (debug mode) */
    PyObject *handle_failed;   /* callable(handle, exc): Handle._run's error report */
    PyObject *scheduled;   /* loop._scheduled: a heap of TimerHandles by _when */
    PyObject *dispatch;    /* this core's bound dispatch (a deferred dispatch's callback) */
    PyObject *loop_time;   /* a subclass's own loop.time, or NULL: CLOCK_MONOTONIC */
    PyObject *future_type; /* asyncio.Future (create_future) */
    PyObject *task_type;   /* asyncio.Task (create_task) */
    Py_ssize_t off_callback, off_args, off_cancelled, off_loop, off_tb, off_repr, off_context;
    Py_ssize_t off_when, off_scheduled;
    Py_ssize_t off_core;          /* the timer type's _core slot (timers.c), or -1 */
    int own_cancel_count;         /* loop._timer_handle_cancelled is this core's */
    Py_ssize_t timer_cancelled;   /* loop._timer_cancelled_count */
    double clock_resolution;
    int debug, closed, sleeping;
    /* telemetry of the iteration */
    unsigned long long iterations, handles_run;
    double lag_max, lag_ewma;
    double now;            /* CLOCK_MONOTONIC after the last wait */
    unsigned long long enobufs;
    unsigned long long dispatched;
    int telemetry;
    /* add_reader/add_writer (loopcore/watch.c, set_fd_watch) */
    PyObject *readers, *writers;   /* loop._readers, loop._writers: fd -> Watch */
    PyObject *stream_fds;          /* loop._stream_fds: fds the fast path leaves to Python */
    PyObject *transports;          /* loop._transports.data: likewise */
    PyObject *watch_slow;          /* the mixin's (add_reader, add_writer, remove_reader, remove_writer) */
    PyObject *watch_rearm;         /* this core's bound rearm (the re-arm handle's callback) */
    PyObject *watch_context;       /* the empty context re-arm handles run in */
    unsigned long long watch_seq;  /* user_data of the next Watch, from WATCH_UD_BASE */
    /* install_file(): the fd each slot's queued FILES_UPDATE reads when the
     * kernel issues it (a slot's entry is stable until the slot is freed) */
    int *slot_fds;
    unsigned slot_fds_n;
} Core;

/* The base class's slots: asyncio's _FlowControlMixin keeps _extra, _loop,
 * _protocol_paused, _high_water and _low_water in __slots__ right after the
 * object header.  Stream derives from that class (made at import with it as
 * base, see streamobj.c), so its own fields start after them; the module
 * init checks the base's size is exactly this and refuses to load otherwise. */
#define STREAM_BASE_SLOTS 5

typedef struct {
    PyObject_HEAD
    PyObject *base_slots[STREAM_BASE_SLOTS];
    Core *core;
    PyObject *protocol;
    PyObject *data_received;  /* protocol.data_received, bound once */
    PyObject *context;        /* the contextvars.Context callbacks run in, or NULL */
    PyObject *held;           /* list: bytes received while paused/moving (made on first use) */
    PyObject *wbuf;           /* list of bytes not yet handed to the kernel */
    PyObject *inflight;       /* the bytes the kernel is sending, or NULL */
    Py_ssize_t inflight_off;  /* of which the kernel took this many (short sends) */
    Py_ssize_t wsize;
    Py_ssize_t high_water;
    Py_ssize_t lost_writes;
    unsigned long long ud_recv, ud_send;
    unsigned long long bytes_in, bytes_out, ops;
    unsigned long long sends;  /* sends begun by a flush (one per iteration with writes) */
    PyObject *fifo;           /* reply matching (loopcore/replies.c), or NULL */
    double last_active;
    int slot;
    int state;
    int wstate;               /* enum write_state */
    char reading, recv_armed, eof_held, dirty, migrating;
    char buffered, may_be_paused;
    char detached;            /* connection_lost ran: the stream calls nothing back */
    int fd;                   /* the descriptor (the transport's _fd), -1 once handed on */
    /* The transport's own attributes (fields rather than Python slots: set in
     * C at allocation, no per-connection stores from Python): */
    unsigned long long conn_id;
    Py_ssize_t migrations;
    PyObject *sock;           /* _sock: the socket or AcceptedSocket, None once closed */
    PyObject *server;         /* _server: the asyncio Server it counts in, or NULL */
    PyObject *migrate_waiter; /* _migrate_waiter: the future a move waits on, or NULL */
} Stream;

static PyTypeObject CoreType;
static PyTypeObject *StreamType;  /* made at import: its base is asyncio's */
static PyTypeObject WatchType;
static PyObject *lost_write_hook;  /* set_lost_write_hook(): logs a write after the loss */
static int loop_now(Core *c, double *out);
static int stream_finish(Stream *s, PyObject *exc);
static PyObject *make_handle(Core *c, PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *context);
static int fifo_deliver(Stream *s, PyObject *data);
static PyObject *Stream_set_fifo(Stream *s, PyObject *fifo);

static PyObject *s_start_method, *s_empty_tuple, *s_finish_stream, *s_unbind, *s_call_conn_lost,
    *s_call_soon, *s_context_kw;
static PyObject *s_on_eof, *s_recv_failed, *s_send_failed, *s_fatal_error, *s_deliver,
    *s_maybe_pause, *s_maybe_resume, *s_migration_progress, *s_finish, *s_do_shutdown,
    *s_protocol_paused, *s_data_received, *s_connection_made, *s_empty, *s_dr_failed, *s_slow_call_at,
    *s_slow_call_later;

/* PyErr_GetRaisedException arrived in 3.12; this is its 3.11 spelling. */
static PyObject *PyErr_GetRaisedException_compat(void)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
}

static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int ring_live(Core *c)
{
    if (!c->r->initialized) {
        PyErr_SetString(PyExc_RuntimeError, "the loop's ring is closed");
        return 0;
    }
    return 1;
}

/* install_file(slot, fd) -> True, or False when the slot is beyond the table
 * this core keeps (the caller then registers it with a syscall).  Fills the
 * fixed-file slot with an IORING_OP_FILES_UPDATE SQE that rides the next
 * enter instead of an io_uring_register(2) of its own: SQEs are issued in
 * order, so the receive and send SQEs queued after it on this slot find the
 * file there.  Its completion is ignored (UD_IGNORE): if the update failed,
 * those operations fail with EBADF and the transport reports it. */
static PyObject *Core_install_file(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    long slot, fd;
    int res;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "install_file(slot, fd, ud)");
        return NULL;
    }
    slot = PyLong_AsLong(args[0]);
    fd = PyLong_AsLong(args[1]);
    if ((slot == -1 || fd == -1) && PyErr_Occurred())
        return NULL;
    if (slot < 0 || fd < 0)
        return PyErr_Format(PyExc_ValueError, "bad slot %ld or fd %ld", slot, fd);
    if ((unsigned long)slot >= c->slot_fds_n)
        Py_RETURN_FALSE;
    if (!ring_live(c))
        return NULL;
    c->slot_fds[slot] = (int)fd;
    {
        unsigned long long ud = PyLong_AsUnsignedLongLong(args[2]);
        struct io_uring_sqe *sqe;
        if (ud == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        sqe = rl_sqe(c->r);  /* (a full SQ is flushed first, as every prep does) */
        if (sqe == NULL) {
            errno = EBUSY;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        io_uring_prep_files_update(sqe, &c->slot_fds[slot], 1, (int)slot);
        res = rl_finish(sqe, ud, 0);
        if (res) {
            errno = -res;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    Py_RETURN_TRUE;
}

/* file_table(n): slots [0, n) may be filled by install_file (allocated once:
 * queued SQEs point into it, so it never moves). */
static PyObject *Core_file_table(Core *c, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (c->slot_fds != NULL || n <= 0 || n > (1 << 24))
        return PyErr_Format(PyExc_ValueError, "file_table(%zd): set once, 0 < n <= 2**24", n);
    c->slot_fds = PyMem_Calloc((size_t)n, sizeof(int));
    if (c->slot_fds == NULL)
        return PyErr_NoMemory();
    c->slot_fds_n = (unsigned)n;
    Py_RETURN_NONE;
}

#include "loopcore/stream.c"
#include "loopcore/streamobj.c"
#include "loopcore/replies.c"
#include "loopcore/accept.c"
#include "loopcore/dispatch.c"
#include "loopcore/sched.c"
#include "loopcore/timers.c"
#include "loopcore/watch.c"
#include "loopcore/iterate.c"

/* ------------------------------------------------------ the Core type */

static int Core_traverse(Core *c, visitproc visit, void *arg)
{
    Py_VISIT(c->owners);
    Py_VISIT(c->owner2);
    Py_VISIT(c->handlers);
    Py_VISIT(c->keep);
    Py_VISIT(c->on_message);
    Py_VISIT(c->on_error);
    Py_VISIT(c->dirty);
    Py_VISIT(c->loop);
    Py_VISIT(c->ready);
    Py_VISIT(c->ready_append);
    Py_VISIT(c->ready_popleft);
    Py_VISIT(c->handle_type);
    Py_VISIT(c->timer_type);
    Py_VISIT(c->slow_call_soon);
    Py_VISIT(c->handle_failed);
    Py_VISIT(c->scheduled);
    Py_VISIT(c->dispatch);
    Py_VISIT(c->loop_time);
    Py_VISIT(c->future_type);
    Py_VISIT(c->task_type);
    Py_VISIT(c->readers);
    Py_VISIT(c->writers);
    Py_VISIT(c->stream_fds);
    Py_VISIT(c->transports);
    Py_VISIT(c->watch_slow);
    Py_VISIT(c->watch_rearm);
    Py_VISIT(c->watch_context);
    return 0;
}

static int Core_clear(Core *c)
{
    Py_CLEAR(c->owners);
    Py_CLEAR(c->owner2);
    Py_CLEAR(c->handlers);
    Py_CLEAR(c->keep);
    Py_CLEAR(c->on_message);
    Py_CLEAR(c->on_error);
    Py_CLEAR(c->dirty);
    Py_CLEAR(c->loop);
    Py_CLEAR(c->ready);
    Py_CLEAR(c->ready_append);
    Py_CLEAR(c->ready_popleft);
    Py_CLEAR(c->handle_type);
    Py_CLEAR(c->timer_type);
    Py_CLEAR(c->slow_call_soon);
    Py_CLEAR(c->handle_failed);
    Py_CLEAR(c->scheduled);
    Py_CLEAR(c->dispatch);
    Py_CLEAR(c->loop_time);
    Py_CLEAR(c->future_type);
    Py_CLEAR(c->task_type);
    Py_CLEAR(c->readers);
    Py_CLEAR(c->writers);
    Py_CLEAR(c->stream_fds);
    Py_CLEAR(c->transports);
    Py_CLEAR(c->watch_slow);
    Py_CLEAR(c->watch_rearm);
    Py_CLEAR(c->watch_context);
    return 0;
}

static void Core_dealloc(Core *c)
{
    PyObject_GC_UnTrack(c);
    Core_clear(c);
    PyMem_Free(c->slot_fds);
    c->slot_fds = NULL;
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Core_methods[] = {
    {"file_table", (PyCFunction)Core_file_table, METH_O,
     "file_table(n): let install_file fill slots [0, n)"},
    {"install_file", (PyCFunction)(void (*)(void))Core_install_file, METH_FASTCALL,
     "install_file(slot, fd, ud) -> bool: fill a fixed-file slot by an SQE on the next enter"},
    {"submit_wait", (PyCFunction)(void (*)(void))Core_submit_wait, METH_FASTCALL,
     "submit_wait(wait, timeout) -> CQEs ready: flush the SQ, wait for one completion "
     "(at most timeout seconds; None: no deadline) when wait is true"},
    {"set_bufring2", (PyCFunction)Core_set_bufring2, METH_VARARGS,
     "set_bufring2(addr, owner): the second buffer group (ids from 32768), owner kept alive"},
    {"dispatch", (PyCFunction)Core_dispatch, METH_NOARGS,
     "dispatch() -> CQEs handled: route every ready completion to its handler"},
    {"flush_dirty", (PyCFunction)Core_flush_dirty, METH_NOARGS,
     "flush_dirty(): hand every dirty transport's writes to the ring"},
    {"has_dirty", (PyCFunction)Core_has_dirty, METH_NOARGS, "any writes waiting for a flush"},
    {"set_scheduling", (PyCFunction)Core_set_scheduling, METH_VARARGS,
     "set_scheduling(loop, ready, Handle, TimerHandle, slow_call_soon, handle_failed, debug)"},
    {"call_soon", (PyCFunction)(void (*)(void))Core_call_soon, METH_FASTCALL | METH_KEYWORDS,
     "call_soon(callback, *args, context=None) -> asyncio.Handle"},
    {"run_ready", (PyCFunction)Core_run_ready, METH_O,
     "run_ready(n): run the first n handles of the ready queue"},
    {"call_at", (PyCFunction)(void (*)(void))Core_call_at, METH_FASTCALL | METH_KEYWORDS,
     "call_at(when, callback, *args, context=None) -> asyncio.TimerHandle"},
    {"call_later", (PyCFunction)(void (*)(void))Core_call_later, METH_FASTCALL | METH_KEYWORDS,
     "call_later(delay, callback, *args, context=None) -> asyncio.TimerHandle"},
    {"run_once", (PyCFunction)(void (*)(void))Core_run_once, METH_FASTCALL,
     "run_once(stopping, run) -> handles left to run (0 when run did it)"},
    {"time", (PyCFunction)Core_time, METH_NOARGS, "time.monotonic()"},
    {"create_future", (PyCFunction)Core_create_future, METH_NOARGS,
     "create_future() -> asyncio.Future(loop=loop)"},
    {"set_future_types", (PyCFunction)Core_set_future_types, METH_VARARGS,
     "set_future_types(Future, Task): the classes create_future/create_task make"},
    {"timer_handle_cancelled", (PyCFunction)Core_timer_handle_cancelled, METH_O,
     "a TimerHandle was cancelled: count it if it is in the heap"},
    {"create_task", (PyCFunction)(void (*)(void))Core_create_task, METH_FASTCALL | METH_KEYWORDS,
     "create_task(coro, *, name=None, context=None) -> asyncio.Task"},
    {"get_debug", (PyCFunction)Core_get_debug, METH_NOARGS, "the loop's debug flag"},
    {"new_handle", (PyCFunction)(void (*)(void))Core_new_handle, METH_FASTCALL,
     "new_handle(callback, *args) -> asyncio.Handle (not scheduled)"},
    {"set_fd_watch", (PyCFunction)Core_set_fd_watch, METH_VARARGS,
     "set_fd_watch(readers, writers, stream_fds, transports, slow): the fast add_reader's tables"},
    {"add_reader", (PyCFunction)(void (*)(void))Core_add_reader, METH_FASTCALL,
     "add_reader(fd, callback, *args): asyncio's, in C (see loopcore/watch.c)"},
    {"add_writer", (PyCFunction)(void (*)(void))Core_add_writer, METH_FASTCALL,
     "add_writer(fd, callback, *args): asyncio's, in C"},
    {"remove_reader", (PyCFunction)Core_remove_reader, METH_O, "remove_reader(fd) -> bool"},
    {"remove_writer", (PyCFunction)Core_remove_writer, METH_O, "remove_writer(fd) -> bool"},
    {"watch", (PyCFunction)Core_watch, METH_VARARGS,
     "watch(table, fd, mask, handle): register handle for fd (after the Python checks)"},
    {"unwatch", (PyCFunction)Core_unwatch, METH_VARARGS,
     "unwatch(table, fd) -> bool: drop fd's registration (after the Python checks)"},
    {"rearm", (PyCFunction)Core_rearm, METH_O, "rearm(watch): arm its poll again if still registered"},
    {"poll", (PyCFunction)Core_poll, METH_O,
     "poll(timeout): flush, wait (None: no deadline), dispatch or defer the completions"},
    {NULL}
};

static PyMemberDef Core_members[] = {
    {"now", T_DOUBLE, offsetof(Core, now), READONLY, "monotonic time after the last wait"},
    {"enobufs", T_ULONGLONG, offsetof(Core, enobufs), 0, "receives that found no buffer"},
    {"dispatched", T_ULONGLONG, offsetof(Core, dispatched), READONLY, "completions dispatched"},
    {"telemetry", T_INT, offsetof(Core, telemetry), READONLY, NULL},
    {"dirty", T_OBJECT, offsetof(Core, dirty), READONLY, "streams waiting for a flush"},
    {"debug", T_INT, offsetof(Core, debug), 0, "asyncio debug mode: call_soon takes asyncio's path"},
    {"closed", T_INT, offsetof(Core, closed), 0, "the loop is closed: call_soon raises"},
    {"sleeping", T_INT, offsetof(Core, sleeping), READONLY,
     "the loop is (about to be) blocked in the kernel: other threads must wake it"},
    {"own_cancel_count", T_INT, offsetof(Core, own_cancel_count), 0,
     "the loop counts cancelled timers with this core's timer_handle_cancelled"},
    {"timer_cancelled", T_PYSSIZET, offsetof(Core, timer_cancelled), 0,
     "cancelled timers still in the heap (asyncio's _timer_cancelled_count)"},
    {"iterations", T_ULONGLONG, offsetof(Core, iterations), READONLY, NULL},
    {"handles_run", T_ULONGLONG, offsetof(Core, handles_run), READONLY, NULL},
    {"lag_max", T_DOUBLE, offsetof(Core, lag_max), READONLY, "largest timer lag (s)"},
    {"lag_ewma", T_DOUBLE, offsetof(Core, lag_ewma), READONLY, "timer lag, moving average (s)"},
    {NULL}
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringleader.runtime._loopcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One loop's wait, harvest and dispatch (see the module docstring).",
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_members = Core_members,
    .tp_init = (initproc)Core_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *set_lost_write_hook(PyObject *m, PyObject *fn)
{
    Py_INCREF(fn);
    Py_XSETREF(lost_write_hook, fn);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"timer_handle_type", timer_handle_type, METH_O,
     "timer_handle_type(asyncio.TimerHandle) -> the core's subclass, its cancel() in C"},
    {"set_lost_write_hook", set_lost_write_hook, METH_O,
     "set_lost_write_hook(fn): fn() runs for each write from the 5th after a connection's loss"},
    {NULL}
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_loopcore",
    "The event loop's per-event path in C: wait, harvest, dispatch, stream receive/write/send.",
    -1, module_methods,
};

#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return NULL

PyMODINIT_FUNC PyInit__loopcore(void)
{
    PyObject *m;
    INTERN(s_on_eof, "_on_eof");
    INTERN(s_done, "done");
    INTERN(s_set_result, "set_result");
    INTERN(s_recv_failed, "_recv_failed");
    INTERN(s_send_failed, "_send_failed");
    INTERN(s_fatal_error, "_fatal_error");
    INTERN(s_deliver, "_deliver");
    INTERN(s_maybe_pause, "_maybe_pause_protocol");
    INTERN(s_maybe_resume, "_maybe_resume_protocol");
    INTERN(s_migration_progress, "_migration_progress");
    INTERN(s_finish, "_finish");
    INTERN(s_finish_stream, "finish_stream");
    INTERN(s_unbind, "_unbind");
    INTERN(s_call_conn_lost, "_call_connection_lost");
    INTERN(s_call_soon, "call_soon");
    if ((s_context_kw = Py_BuildValue("(s)", "context")) == NULL)
        return NULL;
    INTERN(s_do_shutdown, "_do_shutdown");
    INTERN(s_protocol_paused, "_protocol_paused");
    INTERN(s_data_received, "data_received");
    INTERN(s_connection_made, "connection_made");
    INTERN(s_slow_call_at, "_slow_call_at");
    INTERN(s_slow_call_later, "_slow_call_later");
    INTERN(s_dr_failed, "Fatal error: protocol.data_received() call failed.");
    if ((s_empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return NULL;
    if ((s_loop_kwnames = Py_BuildValue("(s)", "loop")) == NULL)
        return NULL;
    if ((s_task_kwnames = Py_BuildValue("(sss)", "loop", "name", "context")) == NULL)
        return NULL;
    INTERN(s_task_factory, "_task_factory");
    INTERN(s_slow_create_task, "_slow_create_task");
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&WatchType) < 0)
        return NULL;
    if ((StreamType = make_stream_type()) == NULL || PyType_Ready(&AcceptorType) < 0)
        return NULL;
    /* the Acceptor's start handle calls Stream._start(transport, protocol) */
    if ((s_start_method = PyObject_GetAttrString((PyObject *)StreamType, "_start")) == NULL ||
        (s_empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    Py_INCREF(&WatchType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObject(m, "Stream", Py_NewRef((PyObject *)StreamType)) < 0 ||
        PyModule_AddObject(m, "Acceptor", Py_NewRef((PyObject *)&AcceptorType)) < 0 ||
        PyModule_AddObject(m, "Watch", (PyObject *)&WatchType) < 0 ||
        PyModule_AddIntConstant(m, "OPEN", ST_OPEN) < 0 ||
        PyModule_AddIntConstant(m, "CLOSING", ST_CLOSING) < 0 ||
        PyModule_AddIntConstant(m, "LOST", ST_LOST) < 0 ||
        PyModule_AddIntConstant(m, "DONE", ST_DONE) < 0 ||
        PyModule_AddIntConstant(m, "W_OPEN", W_OPEN) < 0 ||
        PyModule_AddIntConstant(m, "W_EOF_PENDING", W_EOF_PENDING) < 0 ||
        PyModule_AddIntConstant(m, "W_SHUT", W_SHUT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
