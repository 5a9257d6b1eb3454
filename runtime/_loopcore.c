/* ringleader.runtime._loopcore: the event loop's per-event path, compiled.
 *
 * What is here (everything a request/response pays for on every event):
 *
 *   Core    one per RingEventLoop.  submit_wait() flushes the SQ and waits in
 *           the kernel; dispatch() takes the completions off the CQ one at a
 *           time and routes each by user_data: a Stream's receive or send
 *           completion is handled here in C; any other handler (a Python
 *           callable in the loop's handler dict: sock_* futures, polls,
 *           accepts, cancels, ...) is called as handler(res, flags) or, when
 *           the completion took a provided buffer, handler(res, flags, bytes
 *           or None); user_data at or above TAG_BASE without a handler goes to
 *           on_message(ud, res).  flush_dirty() hands every transport's queued
 *           writes to the ring (one send each).
 *   Stream  the hot half of one RingTransport: the receive (multishot into the
 *           loop's provided-buffer ring, bytes handed straight to the
 *           protocol's data_received), the write buffer, the one in-flight
 *           send, and the per-connection counters.
 *
 * What is not here: anything that happens once per connection or less
 * (construction, close, pause/resume, EOF, errors, TLS, migration).  Those
 * stay in runtime/transport.py, which this file calls back through a few
 * named methods of the transport (the contract in runtime/contract.py):
 * _on_eof, _recv_failed, _send_failed, _fatal_error, _deliver,
 * _maybe_pause_protocol, _maybe_resume_protocol, _migration_progress,
 * _finish, _do_shutdown.
 *
 * The SQE/CQE helpers are the uring binding's own (_helpers.c is compiled in
 * here as well), so both modules fill SQEs exactly the same way and share
 * the ring's C counters; the Python side passes the addresses of the cffi
 * structs together with the objects owning them (kept alive here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <poll.h>
#include "_helpers.c"

#define TAG_BASE (1ull << 56)

enum stream_state { ST_OPEN = 0, ST_CLOSING = 1, ST_LOST = 2, ST_DONE = 3 };

typedef struct {
    PyObject_HEAD
    struct rl_ring *r;
    struct rl_bufring *b;
    PyObject *owners;      /* (Ring, BufferRing): keep the C structs alive */
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
    Py_ssize_t off_callback, off_args, off_cancelled, off_loop, off_tb, off_repr, off_context;
    Py_ssize_t off_when, off_scheduled;
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
} Core;

typedef struct {
    PyObject_HEAD
    Core *core;
    PyObject *transport;
    PyObject *protocol;
    PyObject *data_received;  /* protocol.data_received, bound once */
    PyObject *held;           /* list: bytes received while paused/moving */
    PyObject *wbuf;           /* list of bytes not yet handed to the kernel */
    PyObject *inflight;       /* the bytes the kernel is sending, or NULL */
    Py_ssize_t wsize;
    Py_ssize_t high_water;
    Py_ssize_t lost_writes;
    unsigned long long ud_recv, ud_send;
    unsigned long long bytes_in, bytes_out, ops;
    double last_active;
    int slot;
    int state;
    char reading, recv_armed, eof_held, dirty, write_eof, shut_wr, migrating;
    char buffered, may_be_paused;
} Stream;

static PyTypeObject CoreType;
static PyTypeObject StreamType;
static PyTypeObject WatchType;
static PyObject *lost_write_hook;  /* set_lost_write_hook(): logs a write after the loss */
static int loop_now(Core *c, double *out);
static PyObject *make_handle(Core *c, PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *context);

static PyObject *s_on_eof, *s_recv_failed, *s_send_failed, *s_fatal_error, *s_deliver,
    *s_maybe_pause, *s_maybe_resume, *s_migration_progress, *s_finish, *s_do_shutdown,
    *s_protocol_paused, *s_data_received, *s_empty, *s_dr_failed, *s_slow_call_at,
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

/* ------------------------------------------------------------ Stream */

/* Call transport.<name>(*args); returns 0, or -1 with the exception set. */
static int call_transport(Stream *s, PyObject *name, PyObject *arg1, PyObject *arg2)
{
    PyObject *args[3] = {s->transport, arg1, arg2};
    size_t n = 1 + (arg1 != NULL) + (arg2 != NULL);
    PyObject *r;
    if (s->transport == NULL)
        return 0;
    r = PyObject_VectorcallMethod(name, args, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int stream_arm_recv(Stream *s)
{
    int res;
    if (!s->reading || s->recv_armed || s->state != ST_OPEN || s->migrating)
        return 0;
    if (!ring_live(s->core))
        return -1;
    res = rl_prep_recv_bufsel(s->core->r, s->slot, s->core->b->bgid, 1, s->ud_recv,
                              IOSQE_FIXED_FILE);
    if (res) {
        errno = -res;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    s->recv_armed = 1;
    return 0;
}

static int stream_mark_dirty(Stream *s)
{
    if (s->dirty || s->inflight != NULL || s->migrating)
        return 0;
    s->dirty = 1;
    return PyList_Append(s->core->dirty, (PyObject *)s);
}

/* Hand the queued writes to the ring as one send (at most one in flight). */
static int stream_flush(Stream *s)
{
    PyObject *data;
    Py_ssize_t n;
    int res;
    s->dirty = 0;
    n = PyList_GET_SIZE(s->wbuf);
    if (s->inflight != NULL || n == 0 || s->state >= ST_LOST || s->migrating)
        return 0;
    if (!ring_live(s->core))
        return -1;
    if (n == 1) {
        data = PyList_GET_ITEM(s->wbuf, 0);
        Py_INCREF(data);
    } else {
        data = _PyBytes_Join(s_empty, s->wbuf);
        if (data == NULL)
            return -1;
    }
    if (PyList_SetSlice(s->wbuf, 0, n, NULL) < 0) {
        Py_DECREF(data);
        return -1;
    }
    /* inflight keeps the bytes alive for the kernel until the send's CQE (or,
     * if the transport dies first, _finish hands them to the ring's keep). */
    s->inflight = data;
    res = rl_prep_send_fixed(s->core->r, s->slot, PyBytes_AS_STRING(data),
                             (unsigned)PyBytes_GET_SIZE(data), s->ud_send);
    if (res) {
        errno = -res;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int stream_deliver(Stream *s, PyObject *data)
{
    PyObject *r;
    if (s->buffered)
        return call_transport(s, s_deliver, data, NULL);
    r = PyObject_CallOneArg(s->data_received, data);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    {
        PyObject *exc = PyErr_GetRaisedException_compat();
        int rc = call_transport(s, s_fatal_error, exc, s_dr_failed);
        Py_DECREF(exc);
        return rc;
    }
}

/* A receive completion.  data: the received bytes (res > 0) or NULL. */
static int stream_on_recv(Stream *s, int res, unsigned flags, PyObject *data)
{
    if (!(flags & IORING_CQE_F_MORE))
        s->recv_armed = 0;
    if (res > 0) {
        if (s->core->telemetry) {
            s->bytes_in += (unsigned)res;
            s->ops++;
            s->last_active = s->core->now;
        }
        if (s->state >= ST_LOST)
            return 0;
        if (!s->reading || s->migrating || PyList_GET_SIZE(s->held)) {
            /* Paused, moving, or older bytes still queued: keep the order. */
            if (PyList_Append(s->held, data) < 0)
                return -1;
        } else if (stream_deliver(s, data) < 0) {
            return -1;
        }
    } else if (res == 0) {
        if (s->reading && !s->migrating)
            return call_transport(s, s_on_eof, NULL, NULL);
        s->eof_held = 1;
        return 0;
    } else if (res == -ENOBUFS) {
        s->core->enobufs++;
    } else if (res != -ECANCELED) {
        PyObject *r = PyLong_FromLong(res);
        int rc;
        if (r == NULL)
            return -1;
        rc = call_transport(s, s_recv_failed, r, NULL);
        Py_DECREF(r);
        return rc;
    }
    if (!s->recv_armed) {
        if (s->migrating)
            return call_transport(s, s_migration_progress, NULL, NULL);
        return stream_arm_recv(s);
    }
    return 0;
}

static int stream_on_send(Stream *s, int res)
{
    PyObject *data = s->inflight;
    Py_ssize_t len;
    if (res < 0) {
        PyObject *r;
        int rc;
        s->inflight = NULL;
        Py_XDECREF(data);
        if (s->state >= ST_LOST)
            return 0;
        r = PyLong_FromLong(res);
        if (r == NULL)
            return -1;
        rc = call_transport(s, s_send_failed, r, NULL);
        Py_DECREF(r);
        return rc;
    }
    if (data == NULL)
        return 0;  /* a late completion after _finish handed the bytes over */
    if (s->core->telemetry) {
        s->bytes_out += (unsigned)res;
        s->ops++;
        s->last_active = s->core->now;
    }
    s->wsize -= res;
    len = PyBytes_GET_SIZE(data);
    if (res < len) {
        /* Short send: resend the rest before anything queued after it. */
        PyObject *rest = PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + res, len - res);
        if (rest == NULL)
            return -1;
        s->inflight = rest;
        Py_DECREF(data);
        if (s->state < ST_LOST && !s->migrating) {
            int rc = rl_prep_send_fixed(s->core->r, s->slot, PyBytes_AS_STRING(rest),
                                        (unsigned)PyBytes_GET_SIZE(rest), s->ud_send);
            if (rc) {
                errno = -rc;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
        }
        return 0;
    }
    s->inflight = NULL;
    Py_DECREF(data);
    if (s->state >= ST_LOST)
        return 0;
    if (s->may_be_paused) {
        PyObject *p;
        if (call_transport(s, s_maybe_resume, NULL, NULL) < 0)
            return -1;
        p = s->transport ? PyObject_GetAttr(s->transport, s_protocol_paused) : NULL;
        if (p == NULL && PyErr_Occurred())
            return -1;
        s->may_be_paused = p != NULL && PyObject_IsTrue(p);
        Py_XDECREF(p);
    }
    if (PyList_GET_SIZE(s->wbuf))
        return stream_mark_dirty(s);
    if (s->migrating)
        return call_transport(s, s_migration_progress, NULL, NULL);
    if (s->state == ST_CLOSING)
        return call_transport(s, s_finish, Py_None, NULL);
    if (s->write_eof && !s->shut_wr)
        return call_transport(s, s_do_shutdown, NULL, NULL);
    return 0;
}

static PyObject *Stream_write(Stream *s, PyObject *data)
{
    Py_ssize_t n;
    if (!PyBytes_CheckExact(data)) {
        if (!PyObject_CheckBuffer(data) ||
            !(PyBytes_Check(data) || PyByteArray_Check(data) || PyMemoryView_Check(data))) {
            return PyErr_Format(PyExc_TypeError,
                                "data argument must be a bytes-like object, not '%.200s'",
                                Py_TYPE(data)->tp_name);
        }
        /* Copy mutable buffers: the caller may reuse them before the kernel reads. */
        data = PyBytes_FromObject(data);
        if (data == NULL)
            return NULL;
    } else {
        Py_INCREF(data);
    }
    if (s->write_eof) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        return NULL;
    }
    if (s->state >= ST_LOST) {
        Py_DECREF(data);
        s->lost_writes++;
        if (s->lost_writes >= 5 && lost_write_hook != NULL) {
            /* asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES; the hook is
             * module-wide because the transport may be gone already */
            PyObject *r = PyObject_CallNoArgs(lost_write_hook);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
        }
        Py_RETURN_NONE;
    }
    n = PyBytes_GET_SIZE(data);
    if (n == 0) {
        Py_DECREF(data);
        Py_RETURN_NONE;
    }
    if (PyList_Append(s->wbuf, data) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    Py_DECREF(data);
    s->wsize += n;
    if (stream_mark_dirty(s) < 0)
        return NULL;
    if (s->wsize > s->high_water) {
        s->may_be_paused = 1;
        if (call_transport(s, s_maybe_pause, NULL, NULL) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Stream_flush(Stream *s, PyObject *unused)
{
    if (stream_flush(s) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Stream_arm_recv(Stream *s, PyObject *unused)
{
    if (stream_arm_recv(s) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Stream_mark_dirty(Stream *s, PyObject *unused)
{
    if (stream_mark_dirty(s) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Stream_set_protocol(Stream *s, PyObject *args)
{
    PyObject *protocol, *dr = NULL;
    int buffered;
    if (!PyArg_ParseTuple(args, "Op", &protocol, &buffered))
        return NULL;
    if (!buffered) {
        dr = PyObject_GetAttr(protocol, s_data_received);
        if (dr == NULL)
            return NULL;
    }
    Py_INCREF(protocol);
    Py_XSETREF(s->protocol, protocol);
    Py_XSETREF(s->data_received, dr);
    s->buffered = (char)buffered;
    Py_RETURN_NONE;
}

/* Release the references to the transport and protocol (connection_lost ran). */
static PyObject *Stream_detach_objects(Stream *s, PyObject *unused)
{
    Py_CLEAR(s->protocol);
    Py_CLEAR(s->data_received);
    Py_CLEAR(s->transport);
    Py_RETURN_NONE;
}

/* For tests and the cold path: feed one completion as the dispatcher would. */
static PyObject *Stream_on_recv(Stream *s, PyObject *args)
{
    int res;
    unsigned flags;
    PyObject *data = Py_None;
    if (!PyArg_ParseTuple(args, "iI|O", &res, &flags, &data))
        return NULL;
    if (stream_on_recv(s, res, flags, data == Py_None ? NULL : data) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Stream_on_send(Stream *s, PyObject *args)
{
    int res;
    unsigned flags = 0;
    if (!PyArg_ParseTuple(args, "i|I", &res, &flags))
        return NULL;
    if (stream_on_send(s, res) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int Stream_init(Stream *s, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"core", "transport", "slot", "ud_recv", "ud_send", "high_water",
                             "telemetry", NULL};
    PyObject *core, *transport;
    int slot, telemetry = 1;
    unsigned long long ur, us;
    Py_ssize_t hw;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OiKKn|p", kwlist, &CoreType, &core, &transport,
                                     &slot, &ur, &us, &hw, &telemetry))
        return -1;
    Py_INCREF(core);
    Py_XSETREF(s->core, (Core *)core);
    Py_INCREF(transport);
    Py_XSETREF(s->transport, transport);
    if (s->held == NULL && (s->held = PyList_New(0)) == NULL)
        return -1;
    if (s->wbuf == NULL && (s->wbuf = PyList_New(0)) == NULL)
        return -1;
    s->slot = slot;
    s->ud_recv = ur;
    s->ud_send = us;
    s->high_water = hw;
    s->reading = 1;
    s->state = ST_OPEN;
    return 0;
}

/* Move to another loop's Core (migration): new slot and user_data. */
static PyObject *Stream_rebind(Stream *s, PyObject *args)
{
    PyObject *core;
    int slot;
    unsigned long long ur, us;
    if (!PyArg_ParseTuple(args, "O!iKK", &CoreType, &core, &slot, &ur, &us))
        return NULL;
    Py_INCREF(core);
    Py_XSETREF(s->core, (Core *)core);
    s->slot = slot;
    s->ud_recv = ur;
    s->ud_send = us;
    Py_RETURN_NONE;
}

static int Stream_traverse(Stream *s, visitproc visit, void *arg)
{
    Py_VISIT(s->core);
    Py_VISIT(s->transport);
    Py_VISIT(s->protocol);
    Py_VISIT(s->data_received);
    Py_VISIT(s->held);
    Py_VISIT(s->wbuf);
    Py_VISIT(s->inflight);
    return 0;
}

static int Stream_clear(Stream *s)
{
    Py_CLEAR(s->core);
    Py_CLEAR(s->transport);
    Py_CLEAR(s->protocol);
    Py_CLEAR(s->data_received);
    Py_CLEAR(s->held);
    Py_CLEAR(s->wbuf);
    Py_CLEAR(s->inflight);
    return 0;
}

static void Stream_dealloc(Stream *s)
{
    PyObject_GC_UnTrack(s);
    Stream_clear(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef Stream_methods[] = {
    {"write", (PyCFunction)Stream_write, METH_O, "Queue bytes; flushed once per loop iteration."},
    {"flush", (PyCFunction)Stream_flush, METH_NOARGS, "Hand queued writes to the ring now."},
    {"arm_recv", (PyCFunction)Stream_arm_recv, METH_NOARGS, "Start the multishot receive."},
    {"mark_dirty", (PyCFunction)Stream_mark_dirty, METH_NOARGS, "Queue for the next flush."},
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_VARARGS, "set_protocol(p, buffered)"},
    {"detach_objects", (PyCFunction)Stream_detach_objects, METH_NOARGS, "Drop transport/protocol."},
    {"rebind", (PyCFunction)Stream_rebind, METH_VARARGS, "rebind(core, slot, ud_recv, ud_send)"},
    {"on_recv", (PyCFunction)Stream_on_recv, METH_VARARGS, "on_recv(res, flags, data=None)"},
    {"on_send", (PyCFunction)Stream_on_send, METH_VARARGS, "on_send(res, flags=0)"},
    {NULL}
};

#define SM(name, type, field, fl) {name, type, offsetof(Stream, field), fl, NULL}
static PyMemberDef Stream_members[] = {
    SM("transport", T_OBJECT, transport, READONLY),
    SM("protocol", T_OBJECT, protocol, READONLY),
    SM("held", T_OBJECT, held, READONLY),
    SM("wbuf", T_OBJECT, wbuf, READONLY),
    SM("inflight", T_OBJECT, inflight, 0),
    SM("wsize", T_PYSSIZET, wsize, 0),
    SM("high_water", T_PYSSIZET, high_water, 0),
    SM("lost_writes", T_PYSSIZET, lost_writes, 0),
    SM("ud_recv", T_ULONGLONG, ud_recv, READONLY),
    SM("ud_send", T_ULONGLONG, ud_send, READONLY),
    SM("bytes_in", T_ULONGLONG, bytes_in, 0),
    SM("bytes_out", T_ULONGLONG, bytes_out, 0),
    SM("ops", T_ULONGLONG, ops, 0),
    SM("last_active", T_DOUBLE, last_active, 0),
    SM("slot", T_INT, slot, 0),
    SM("state", T_INT, state, 0),
    SM("reading", T_BOOL, reading, 0),
    SM("recv_armed", T_BOOL, recv_armed, 0),
    SM("eof_held", T_BOOL, eof_held, 0),
    SM("dirty", T_BOOL, dirty, 0),
    SM("write_eof", T_BOOL, write_eof, 0),
    SM("shut_wr", T_BOOL, shut_wr, 0),
    SM("migrating", T_BOOL, migrating, 0),
    SM("buffered", T_BOOL, buffered, READONLY),
    SM("may_be_paused", T_BOOL, may_be_paused, 0),
    {NULL}
};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringleader.runtime._loopcore.Stream",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The hot half of a RingTransport: receive, write buffer, send.",
    .tp_traverse = (traverseproc)Stream_traverse,
    .tp_clear = (inquiry)Stream_clear,
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_methods = Stream_methods,
    .tp_members = Stream_members,
    .tp_init = (initproc)Stream_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------- Watch */
/* One add_reader/add_writer registration: a one-shot poll on an ordinary fd,
 * re-armed after each callback (asyncio's level-triggered semantics).  The
 * dispatcher recognises a Watch in the handler table and, when its poll
 * fires while it is still the fd's registration, queues the callback's
 * handle followed by the Watch's re-arm handle: armed only after the
 * callback ran, the poll fires again only if the callback left the fd ready
 * (no spurious wake-up epoll would not give). */

typedef struct {
    PyObject_HEAD
    Core *core;
    PyObject *table;     /* loop._readers or loop._writers: fd -> Watch */
    PyObject *fd;        /* the key in table */
    PyObject *handle;    /* asyncio.Handle of the user's callback */
    PyObject *rearm;     /* asyncio.Handle of this Watch's arm() */
    unsigned long long ud;
    unsigned mask;
    int ifd;
} Watch;

static int watch_current(Watch *w)
{
    PyObject *cur = PyDict_GetItemWithError(w->table, w->fd);
    return cur == (PyObject *)w;
}

static int watch_arm(Watch *w)
{
    int res;
    if (!ring_live(w->core))
        return -1;
    res = rl_prep_poll(w->core->r, w->ifd, w->mask, 0, w->ud, 0);
    if (res) {
        errno = -res;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int watch_fired(Watch *w, int res)
{
    PyObject *r;
    int cur = watch_current(w);
    if (cur < 0)
        return -1;
    if (!cur || res < 0)
        return 0;  /* removed, or the fd was closed while watched (-EBADF): stop quietly */
    r = PyObject_CallOneArg(w->core->ready_append, w->handle);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    r = PyObject_CallOneArg(w->core->ready_append, w->rearm);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *Watch_arm(Watch *w, PyObject *unused)
{
    int cur = watch_current(w);
    if (cur < 0)
        return NULL;
    if (cur && watch_arm(w) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Watch(core, table, fd, mask, handle, ud): registered in table[fd] and armed by the caller. */
static int Watch_init(Watch *w, PyObject *args, PyObject *kw)
{
    PyObject *core, *table, *fd, *handle, *arm;
    unsigned mask;
    unsigned long long ud;
    if (!PyArg_ParseTuple(args, "O!O!OIOK", &CoreType, &core, &PyDict_Type, &table, &fd, &mask,
                          &handle, &ud))
        return -1;
    w->ifd = PyLong_AsLong(fd);
    if (w->ifd == -1 && PyErr_Occurred())
        return -1;
    if (((Core *)core)->handle_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Watch before set_scheduling");
        return -1;
    }
    Py_INCREF(core); Py_XSETREF(w->core, (Core *)core);
    Py_INCREF(table); Py_XSETREF(w->table, table);
    Py_INCREF(fd); Py_XSETREF(w->fd, fd);
    Py_INCREF(handle); Py_XSETREF(w->handle, handle);
    w->mask = mask;
    w->ud = ud;
    arm = PyObject_GetAttrString((PyObject *)w, "arm");
    if (arm == NULL)
        return -1;
    Py_XSETREF(w->rearm, make_handle((Core *)core, ((Core *)core)->handle_type, &arm, 1, Py_None));
    Py_DECREF(arm);
    return w->rearm ? 0 : -1;
}

static int Watch_traverse(Watch *w, visitproc visit, void *arg)
{
    Py_VISIT(w->core);
    Py_VISIT(w->table);
    Py_VISIT(w->fd);
    Py_VISIT(w->handle);
    Py_VISIT(w->rearm);
    return 0;
}

static int Watch_clear(Watch *w)
{
    Py_CLEAR(w->core);
    Py_CLEAR(w->table);
    Py_CLEAR(w->fd);
    Py_CLEAR(w->handle);
    Py_CLEAR(w->rearm);
    return 0;
}

static void Watch_dealloc(Watch *w)
{
    PyObject_GC_UnTrack(w);
    Watch_clear(w);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMethodDef Watch_methods[] = {
    {"arm", (PyCFunction)Watch_arm, METH_NOARGS, "(Re-)arm the poll if still registered."},
    {NULL}
};

static PyMemberDef Watch_members[] = {
    {"handle", T_OBJECT, offsetof(Watch, handle), 0, "the callback's asyncio.Handle"},
    {"ud", T_ULONGLONG, offsetof(Watch, ud), READONLY, NULL},
    {"fd", T_OBJECT, offsetof(Watch, fd), READONLY, NULL},
    {NULL}
};

static PyTypeObject WatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringleader.runtime._loopcore.Watch",
    .tp_basicsize = sizeof(Watch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An add_reader/add_writer registration (one-shot poll, re-armed after the callback).",
    .tp_traverse = (traverseproc)Watch_traverse,
    .tp_clear = (inquiry)Watch_clear,
    .tp_dealloc = (destructor)Watch_dealloc,
    .tp_methods = Watch_methods,
    .tp_members = Watch_members,
    .tp_init = (initproc)Watch_init,
    .tp_new = PyType_GenericNew,
};

/* -------------------------------------------------------------- Core */

static int Core_init(Core *c, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"ring_addr", "bufring_addr", "owners", "handlers", "keep",
                             "on_message", "on_error", "telemetry", NULL};
    unsigned long long ra, ba;
    PyObject *owners, *handlers, *keep, *on_message, *on_error;
    int telemetry = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KKOO!O!OO|p", kwlist, &ra, &ba, &owners,
                                     &PyDict_Type, &handlers, &PyDict_Type, &keep, &on_message,
                                     &on_error, &telemetry))
        return -1;
    if (!ra || !ba) {
        PyErr_SetString(PyExc_ValueError, "ring and buffer ring addresses are required");
        return -1;
    }
    c->r = (struct rl_ring *)(uintptr_t)ra;
    c->b = (struct rl_bufring *)(uintptr_t)ba;
    Py_INCREF(owners);
    Py_XSETREF(c->owners, owners);
    Py_INCREF(handlers);
    Py_XSETREF(c->handlers, handlers);
    Py_INCREF(keep);
    Py_XSETREF(c->keep, keep);
    Py_INCREF(on_message);
    Py_XSETREF(c->on_message, on_message);
    Py_INCREF(on_error);
    Py_XSETREF(c->on_error, on_error);
    if (c->dirty == NULL && (c->dirty = PyList_New(0)) == NULL)
        return -1;
    c->telemetry = telemetry;
    c->now = mono_now();
    return 0;
}

/* submit_wait(wait: bool, timeout: float | None) -> completions ready in the CQ */
static PyObject *Core_submit_wait(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    int wait, ret;
    int64_t ns = -1;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "submit_wait(wait, timeout)");
        return NULL;
    }
    wait = PyObject_IsTrue(args[0]);
    if (wait < 0)
        return NULL;
    if (args[1] != Py_None) {
        double t = PyFloat_AsDouble(args[1]);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        ns = t <= 0 ? 0 : (int64_t)(t * 1e9);
    }
    if (!ring_live(c))
        return NULL;
    if (wait) {
        Py_BEGIN_ALLOW_THREADS
        ret = rl_submit_wait(c->r, 1, ns);
        Py_END_ALLOW_THREADS
    } else {
        ret = rl_submit_wait(c->r, 0, 0);
    }
    c->now = mono_now();
    if (ret < 0) {
        errno = -ret;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (io_uring_cq_has_overflow(&c->r->ring))
        c->r->st.cq_backlog++;
    return PyLong_FromUnsignedLong(io_uring_cq_ready(&c->r->ring));
}

static int report_error(Core *c)
{
    PyObject *exc, *r;
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    exc = PyErr_GetRaisedException_compat();
    r = PyObject_CallOneArg(c->on_error, exc);
    Py_DECREF(exc);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* dispatch() -> completions handled.  Each CQE is taken off the ring before
 * its handler runs, so a handler that raises SystemExit/KeyboardInterrupt
 * leaves the rest in the CQ for the next call. */
static PyObject *Core_dispatch(Core *c, PyObject *unused)
{
    struct io_uring_cqe *cqe;
    unsigned got = 0;
    if (!ring_live(c))
        return NULL;
    while (io_uring_peek_cqe(&c->r->ring, &cqe) == 0 && cqe != NULL) {
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        uint32_t flags = cqe->flags;
        PyObject *data = NULL, *key, *h;
        int rc = 0;
        if (flags & IORING_CQE_F_BUFFER) {
            unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
            if (res > 0) {
                data = PyBytes_FromStringAndSize(rl_buf_addr(c->b, bid), res);
                if (data == NULL)
                    return NULL;  /* the CQE stays; its buffer with it */
            }
            rl_bufring_recycle(c->b, bid);
        }
        io_uring_cqe_seen(&c->r->ring, cqe);
        got++;
        key = PyLong_FromUnsignedLongLong(ud);
        if (key == NULL) {
            Py_XDECREF(data);
            return NULL;
        }
        if (!(flags & IORING_CQE_F_MORE) && PyDict_GET_SIZE(c->keep)) {
            PyObject *old = PyDict_GetItemWithError(c->keep, key);
            if (old != NULL && PyDict_DelItem(c->keep, key) < 0)
                rc = -1;
        }
        h = PyDict_GetItemWithError(c->handlers, key);
        if (h != NULL && rc == 0) {
            Py_INCREF(h);
            if (Py_IS_TYPE(h, &StreamType)) {
                Stream *s = (Stream *)h;
                if (ud == s->ud_recv)
                    rc = stream_on_recv(s, res, flags, data);
                else
                    rc = stream_on_send(s, res);
            } else if (Py_IS_TYPE(h, &WatchType)) {
                rc = watch_fired((Watch *)h, res);
            } else {
                PyObject *a[3];
                PyObject *r;
                a[0] = PyLong_FromLong(res);
                a[1] = PyLong_FromUnsignedLong(flags);
                a[2] = data ? data : Py_None;
                if (a[0] == NULL || a[1] == NULL)
                    r = NULL;
                else
                    r = PyObject_Vectorcall(h, a, (flags & IORING_CQE_F_BUFFER) ? 3 : 2, NULL);
                Py_XDECREF(a[0]);
                Py_XDECREF(a[1]);
                if (r == NULL)
                    rc = -1;
                else
                    Py_DECREF(r);
            }
            Py_DECREF(h);
        } else if (h == NULL && PyErr_Occurred()) {
            rc = -1;
        } else if (h == NULL && ud >= TAG_BASE) {
            PyObject *r = PyObject_CallFunction(c->on_message, "Ki", (unsigned long long)ud, res);
            if (r == NULL)
                rc = -1;
            else
                Py_DECREF(r);
        }
        Py_DECREF(key);
        Py_XDECREF(data);
        if (rc < 0 && report_error(c) < 0)
            return NULL;
    }
    c->r->st.cqes_reaped += got;
    c->r->st.batch_hist[rl_bucket(got)]++;
    c->dispatched += got;
    if (c->r->ring.cq.koverflow)
        c->r->st.cq_overflow = *c->r->ring.cq.koverflow;
    return PyLong_FromUnsignedLong(got);
}

/* flush_dirty(): every transport that wrote since the last iteration sends. */
static PyObject *Core_flush_dirty(Core *c, PyObject *unused)
{
    PyObject *list = c->dirty;
    Py_ssize_t i, n = PyList_GET_SIZE(list);
    if (n == 0)
        Py_RETURN_NONE;
    c->dirty = PyList_New(0);
    if (c->dirty == NULL) {
        c->dirty = list;
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (stream_flush((Stream *)PyList_GET_ITEM(list, i)) < 0) {
            /* the rest stay queued for the next flush */
            Py_ssize_t j;
            for (j = i + 1; j < n; j++)
                PyList_Append(c->dirty, PyList_GET_ITEM(list, j));
            Py_DECREF(list);
            return NULL;
        }
    }
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static PyObject *Core_has_dirty(Core *c, PyObject *unused)
{
    return PyBool_FromLong(PyList_GET_SIZE(c->dirty) > 0);
}

/* ---------------------------------------------------- ready queue */

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static Py_ssize_t slot_offset(PyTypeObject *t, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)t, name);
    Py_ssize_t off = -1;
    if (d == NULL)
        return -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX)
        off = ((PyMemberDescrObject *)d)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", t->tp_name, name);
    Py_DECREF(d);
    return off;
}

/* set_scheduling(loop, ready, scheduled, Handle, TimerHandle, slow_call_soon,
 *                handle_failed, clock_resolution, debug, loop_time) */
static PyObject *Core_set_scheduling(Core *c, PyObject *args)
{
    PyObject *loop, *ready, *sched, *ht, *tt, *slow, *failed, *append, *popleft, *disp, *lt;
    double res;
    int debug;
    if (!PyArg_ParseTuple(args, "OOO!O!O!OOdpO", &loop, &ready, &PyList_Type, &sched, &PyType_Type,
                          &ht, &PyType_Type, &tt, &slow, &failed, &res, &debug, &lt))
        return NULL;
    if (lt == Py_None) {
        Py_CLEAR(c->loop_time);
    } else {
        Py_INCREF(lt);
        Py_XSETREF(c->loop_time, lt);
    }
    if (!PyType_IsSubtype((PyTypeObject *)tt, (PyTypeObject *)ht)) {
        PyErr_SetString(PyExc_TypeError, "TimerHandle must derive from Handle");
        return NULL;
    }
#define OFF(field, name) if ((c->field = slot_offset((PyTypeObject *)ht, name)) < 0) return NULL
    OFF(off_callback, "_callback");
    OFF(off_args, "_args");
    OFF(off_cancelled, "_cancelled");
    OFF(off_loop, "_loop");
    OFF(off_tb, "_source_traceback");
    OFF(off_repr, "_repr");
    OFF(off_context, "_context");
#undef OFF
    if ((c->off_when = slot_offset((PyTypeObject *)tt, "_when")) < 0 ||
        (c->off_scheduled = slot_offset((PyTypeObject *)tt, "_scheduled")) < 0)
        return NULL;
    if ((disp = PyObject_GetAttrString((PyObject *)c, "dispatch")) == NULL)
        return NULL;
    Py_XSETREF(c->dispatch, disp);
    Py_INCREF(sched); Py_XSETREF(c->scheduled, sched);
    c->clock_resolution = res;
    if ((append = PyObject_GetAttrString(ready, "append")) == NULL)
        return NULL;
    if ((popleft = PyObject_GetAttrString(ready, "popleft")) == NULL) {
        Py_DECREF(append);
        return NULL;
    }
    Py_INCREF(loop); Py_XSETREF(c->loop, loop);
    Py_INCREF(ready); Py_XSETREF(c->ready, ready);
    Py_XSETREF(c->ready_append, append);
    Py_XSETREF(c->ready_popleft, popleft);
    Py_INCREF(ht); Py_XSETREF(c->handle_type, (PyTypeObject *)ht);
    Py_INCREF(tt); Py_XSETREF(c->timer_type, (PyTypeObject *)tt);
    Py_INCREF(slow); Py_XSETREF(c->slow_call_soon, slow);
    Py_INCREF(failed); Py_XSETREF(c->handle_failed, failed);
    c->debug = debug;
    Py_RETURN_NONE;
}

/* A new asyncio.Handle (or TimerHandle: type) as Handle.__init__ makes it
 * outside debug mode, for the call args[0](*args[1:nargs]); context None
 * means a copy of the current context. */
static PyObject *make_handle(Core *c, PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *context)
{
    PyObject *h, *cbargs;
    Py_ssize_t i;
    cbargs = PyTuple_New(nargs - 1);
    if (cbargs == NULL)
        return NULL;
    for (i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(cbargs, i - 1, args[i]);
    }
    if (context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            Py_DECREF(cbargs);
            return NULL;
        }
    } else {
        Py_INCREF(context);
    }
    h = type->tp_alloc(type, 0);
    if (h == NULL) {
        Py_DECREF(context);
        Py_DECREF(cbargs);
        return NULL;
    }
    Py_INCREF(args[0]);
    SLOT(h, c->off_callback) = args[0];
    SLOT(h, c->off_args) = cbargs;
    Py_INCREF(Py_False);
    SLOT(h, c->off_cancelled) = Py_False;
    Py_INCREF(c->loop);
    SLOT(h, c->off_loop) = c->loop;
    Py_INCREF(Py_None);
    SLOT(h, c->off_tb) = Py_None;
    Py_INCREF(Py_None);
    SLOT(h, c->off_repr) = Py_None;
    SLOT(h, c->off_context) = context;
    return h;
}

/* loop.call_soon(callback, *args, context=None): asyncio's, with the Handle
 * built here (asyncio.Handle itself, its slots filled directly: the same
 * object Handle.__init__ makes outside debug mode) and appended to _ready.
 * Debug mode takes asyncio's own path (thread and callback checks, source
 * tracebacks). */
static PyObject *Core_call_soon(Core *c, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *h, *r;
    if (c->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call_soon before set_scheduling");
        return NULL;
    }
    if (c->debug || nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(
            PyTuple_GET_ITEM(kwnames, 0), "context")))
        return PyObject_Vectorcall(c->slow_call_soon, args, nargsf, kwnames);
    if (c->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_soon() missing the callback argument");
        return NULL;
    }
    h = make_handle(c, c->handle_type, args, nargs, nkw == 1 ? args[nargs] : Py_None);
    if (h == NULL)
        return NULL;
    r = PyObject_CallOneArg(c->ready_append, h);
    if (r == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(r);
    return h;
}

/* Run one asyncio.Handle (or TimerHandle) as Handle._run does. */
static int run_handle(Core *c, PyObject *h)
{
    PyObject *ctx = SLOT(h, c->off_context), *cb = SLOT(h, c->off_callback);
    PyObject *cbargs = SLOT(h, c->off_args), *r;
    if (ctx == NULL || cb == NULL || cbargs == NULL || !PyTuple_Check(cbargs)) {
        /* not a Handle we built or recognise: let it run itself */
        r = PyObject_CallMethod(h, "_run", NULL);
    } else {
        Py_INCREF(ctx);
        Py_INCREF(cb);
        Py_INCREF(cbargs);
        if (PyContext_Enter(ctx) < 0) {
            r = NULL;
        } else {
            r = PyObject_Call(cb, cbargs, NULL);
            if (PyContext_Exit(ctx) < 0)
                Py_CLEAR(r);
        }
        Py_DECREF(ctx);
        Py_DECREF(cb);
        Py_DECREF(cbargs);
        if (r == NULL) {
            PyObject *exc, *rr;
            if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
                PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
                return -1;
            exc = PyErr_GetRaisedException_compat();
            rr = PyObject_CallFunctionObjArgs(c->handle_failed, h, exc, NULL);
            Py_DECREF(exc);
            if (rr == NULL)
                return -1;
            Py_DECREF(rr);
            return 0;
        }
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* run_ready(n): pop and run the first n handles of the ready queue (the
 * iteration's share; callbacks they schedule wait for the next iteration). */
static PyObject *Core_run_ready(Core *c, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg), i;
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (c->ready_popleft == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "run_ready before set_scheduling");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *h = PyObject_CallNoArgs(c->ready_popleft);
        int rc;
        if (h == NULL)
            return NULL;
        if (Py_IS_TYPE(h, c->handle_type) || Py_IS_TYPE(h, c->timer_type)) {
            if (SLOT(h, c->off_cancelled) == Py_True) {
                Py_DECREF(h);
                continue;
            }
            rc = run_handle(c, h);
        } else {
            PyObject *cancelled = PyObject_GetAttrString(h, "_cancelled");
            int yes = cancelled ? PyObject_IsTrue(cancelled) : -1;
            Py_XDECREF(cancelled);
            if (yes < 0) {
                Py_DECREF(h);
                return NULL;
            }
            if (yes) {
                Py_DECREF(h);
                continue;
            }
            PyObject *r = PyObject_CallMethod(h, "_run", NULL);
            rc = r ? 0 : -1;
            Py_XDECREF(r);
        }
        Py_DECREF(h);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------- futures, debug */

static PyObject *s_loop_kwnames;

/* create_future(): asyncio.Future(loop=loop), as BaseEventLoop.create_future */
static PyObject *Core_create_future(Core *c, PyObject *unused)
{
    if (c->future_type == NULL || c->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "create_future before set_future_type");
        return NULL;
    }
    return PyObject_Vectorcall(c->future_type, &c->loop, 0, s_loop_kwnames);
}

static PyObject *Core_set_future_type(Core *c, PyObject *t)
{
    Py_INCREF(t);
    Py_XSETREF(c->future_type, t);
    Py_RETURN_NONE;
}

/* new_handle(callback, *args) -> asyncio.Handle, not scheduled */
static PyObject *Core_new_handle(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || c->handle_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "new_handle(callback, *args) after set_scheduling");
        return NULL;
    }
    return make_handle(c, c->handle_type, args, nargs, Py_None);
}

static PyObject *Core_get_debug(Core *c, PyObject *unused)
{
    return PyBool_FromLong(c->debug);
}

/* ------------------------------------------------------ timer heap */
/* loop._scheduled stays asyncio's heap of TimerHandles, kept with heapq's own
 * algorithm; comparisons read _when directly (TimerHandle.__lt__ compares
 * exactly that), so no Python method runs per comparison. */

static double when_of(Core *c, PyObject *h)
{
    PyObject *w = SLOT(h, c->off_when);
    if (w != NULL && PyFloat_CheckExact(w))
        return PyFloat_AS_DOUBLE(w);
    if (w == NULL)
        return 0.0;
    {
        double d = PyFloat_AsDouble(w);
        if (d == -1.0 && PyErr_Occurred())
            PyErr_Clear();  /* call_at checked it converts */
        return d;
    }
}

static void heap_siftdown(Core *c, PyObject **a, Py_ssize_t start, Py_ssize_t pos)
{
    PyObject *item = a[pos];
    double w = when_of(c, item);
    while (pos > start) {
        Py_ssize_t parent = (pos - 1) >> 1;
        if (w < when_of(c, a[parent])) {
            a[pos] = a[parent];
            pos = parent;
            continue;
        }
        break;
    }
    a[pos] = item;
}

static void heap_siftup(Core *c, PyObject **a, Py_ssize_t n, Py_ssize_t pos)
{
    Py_ssize_t start = pos, child = 2 * pos + 1;
    PyObject *item = a[pos];
    while (child < n) {
        Py_ssize_t right = child + 1;
        if (right < n && !(when_of(c, a[child]) < when_of(c, a[right])))
            child = right;
        a[pos] = a[child];
        pos = child;
        child = 2 * pos + 1;
    }
    a[pos] = item;
    heap_siftdown(c, a, start, pos);
}

/* heapq.heappop: a new reference, or NULL (empty heap or error). */
static PyObject *heap_pop(Core *c, PyObject *heap)
{
    Py_ssize_t n = PyList_GET_SIZE(heap);
    PyObject *last, *top;
    if (n == 0)
        return NULL;
    last = PyList_GET_ITEM(heap, n - 1);
    Py_INCREF(last);
    if (PyList_SetSlice(heap, n - 1, n, NULL) < 0) {
        Py_DECREF(last);
        return NULL;
    }
    if (n == 1)
        return last;
    top = PyList_GET_ITEM(heap, 0);  /* the list's reference moves to the caller */
    PyList_SET_ITEM(heap, 0, last);
    heap_siftup(c, ((PyListObject *)heap)->ob_item, n - 1, 0);
    return top;
}

static PyObject *new_timer(Core *c, PyObject *when, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *context)
{
    PyObject *h;
    double w = PyFloat_AsDouble(when);
    if (w == -1.0 && PyErr_Occurred())
        return NULL;
    h = make_handle(c, c->timer_type, args, nargs, context);
    if (h == NULL)
        return NULL;
    Py_INCREF(when);
    SLOT(h, c->off_when) = when;
    if (PyList_Append(c->scheduled, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    heap_siftdown(c, ((PyListObject *)c->scheduled)->ob_item, 0,
                  PyList_GET_SIZE(c->scheduled) - 1);
    Py_INCREF(Py_True);
    SLOT(h, c->off_scheduled) = Py_True;
    return h;
}

/* call_at(when, callback, *args, context=None) and call_later(delay, ...):
 * asyncio's, TimerHandle built here.  Debug mode and unusual keywords go
 * through asyncio's methods (slow, the loop's bound BaseEventLoop methods). */
static PyObject *timer_common(Core *c, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                              int later)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *when, *h;
    if (c->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call_at before set_scheduling");
        return NULL;
    }
    if (c->debug || nargs < 2 || nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(
            PyTuple_GET_ITEM(kwnames, 0), "context"))) {
        /* the loop's _slow_call_at/_slow_call_later: asyncio's own methods */
        PyObject *meth = PyObject_GetAttr(c->loop, later ? s_slow_call_later : s_slow_call_at), *r;
        if (meth == NULL)
            return NULL;
        r = PyObject_Vectorcall(meth, args, nargsf, kwnames);
        Py_DECREF(meth);
        return r;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, later ? "delay must not be None" : "when cannot be None");
        return NULL;
    }
    if (c->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    if (later) {
        double d = PyFloat_AsDouble(args[0]), t;
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        if (loop_now(c, &t) < 0)
            return NULL;
        when = PyFloat_FromDouble(t + d);
        if (when == NULL)
            return NULL;
    } else {
        when = args[0];
        Py_INCREF(when);
    }
    h = new_timer(c, when, args + 1, nargs - 1, nkw == 1 ? args[nargs] : Py_None);
    Py_DECREF(when);
    return h;
}

static PyObject *Core_call_at(Core *c, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return timer_common(c, args, nargsf, kwnames, 0);
}

static PyObject *Core_call_later(Core *c, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return timer_common(c, args, nargsf, kwnames, 1);
}

/* ------------------------------------------------------- iteration */

/* The loop's clock: CLOCK_MONOTONIC (asyncio's time.monotonic), or the
 * time() of a subclass that brings its own clock. */
static int loop_now(Core *c, double *out)
{
    PyObject *t;
    if (c->loop_time == NULL) {
        *out = mono_now();
        return 0;
    }
    t = PyObject_CallNoArgs(c->loop_time);
    if (t == NULL)
        return -1;
    *out = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int is_cancelled(Core *c, PyObject *h)
{
    return SLOT(h, c->off_cancelled) == Py_True;
}

static void set_scheduled(Core *c, PyObject *h, PyObject *v)
{
    PyObject *old = SLOT(h, c->off_scheduled);
    Py_INCREF(v);
    SLOT(h, c->off_scheduled) = v;
    Py_XDECREF(old);
}

/* Drop cancelled timers: all of them when they are most of a big heap,
 * else those at the top (asyncio's _run_once rule). */
static int prune_timers(Core *c)
{
    PyObject *sched = c->scheduled;
    Py_ssize_t n = PyList_GET_SIZE(sched);
    if (n > 100 && (double)c->timer_cancelled / (double)n > 0.5) {
        Py_ssize_t i, k = 0;
        PyObject **a = ((PyListObject *)sched)->ob_item;
        for (i = 0; i < n; i++) {
            if (is_cancelled(c, a[i])) {
                set_scheduled(c, a[i], Py_False);
                Py_DECREF(a[i]);
            } else {
                a[k++] = a[i];
            }
        }
        Py_SET_SIZE(sched, k);
        for (i = k / 2 - 1; i >= 0; i--)
            heap_siftup(c, a, k, i);
        c->timer_cancelled = 0;
        return 0;
    }
    while (PyList_GET_SIZE(sched) && is_cancelled(c, PyList_GET_ITEM(sched, 0))) {
        PyObject *h = heap_pop(c, sched);
        if (h == NULL)
            return -1;
        c->timer_cancelled--;
        set_scheduled(c, h, Py_False);
        Py_DECREF(h);
    }
    return 0;
}

/* The wait and harvest of one iteration; timeout < 0: no deadline. */
static int poll_once(Core *c, double timeout)
{
    PyObject *r;
    int ret;
    Py_ssize_t nready;
    if (PyList_GET_SIZE(c->dirty)) {
        r = Core_flush_dirty(c, NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if (!ring_live(c))
        return -1;
    if (timeout != 0.0) {
        /* Publish "asleep" before the final look at the ready queue: a thread
         * that appends to it and then sees sleeping 0 is guaranteed we see its
         * handle here (the GIL orders both steps). */
        c->sleeping = 1;
        nready = PyObject_Size(c->ready);
        if (nready < 0) {
            c->sleeping = 0;
            return -1;
        }
        if (nready) {
            c->sleeping = 0;
            ret = rl_submit_wait(c->r, 0, 0);
        } else {
            int64_t ns = timeout < 0 ? -1 : (int64_t)(timeout * 1e9);
            Py_BEGIN_ALLOW_THREADS
            ret = rl_submit_wait(c->r, 1, ns);
            Py_END_ALLOW_THREADS
            c->sleeping = 0;
        }
    } else {
        ret = rl_submit_wait(c->r, 0, 0);
    }
    c->now = mono_now();
    if (ret < 0) {
        errno = -ret;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (io_uring_cq_has_overflow(&c->r->ring))
        c->r->st.cq_backlog++;
    if (!io_uring_cq_ready(&c->r->ring))
        return 0;
    nready = PyObject_Size(c->ready);
    if (nready < 0)
        return -1;
    if (nready) {
        /* asyncio runs the callbacks that were ready before a poll ahead of
         * that poll's I/O callbacks (e.g. the task awaiting create_connection
         * resumes before data_received): dispatch after them, in order.  The
         * completions wait in the CQ until then. */
        PyObject *h = make_handle(c, c->handle_type, &c->dispatch, 1, Py_None);
        if (h == NULL)
            return -1;
        r = PyObject_CallOneArg(c->ready_append, h);
        Py_DECREF(h);
    } else {
        r = Core_dispatch(c, NULL);
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* run_once(stopping) -> handles due: asyncio's _run_once up to (not
 * including) running the ready handles: prune timers, wait for I/O or the
 * first timer, dispatch completions, move due timers to the ready queue.
 * With run=True it also runs them (outside debug mode). */
static PyObject *Core_run_once(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *sched = c->scheduled;
    double timeout, now, end;
    Py_ssize_t ntodo;
    int stopping, run;
    if (nargs != 2 || sched == NULL) {
        PyErr_SetString(PyExc_TypeError, "run_once(stopping, run) after set_scheduling");
        return NULL;
    }
    stopping = PyObject_IsTrue(args[0]);
    run = PyObject_IsTrue(args[1]);
    if (stopping < 0 || run < 0)
        return NULL;
    if (prune_timers(c) < 0)
        return NULL;
    ntodo = PyObject_Size(c->ready);
    if (ntodo < 0)
        return NULL;
    if (ntodo || stopping) {
        timeout = 0.0;
    } else if (PyList_GET_SIZE(sched)) {
        if (loop_now(c, &now) < 0)
            return NULL;
        timeout = when_of(c, PyList_GET_ITEM(sched, 0)) - now;
        if (timeout < 0)
            timeout = 0.0;
        if (timeout > 24 * 3600.0)
            timeout = 24 * 3600.0;
    } else {
        timeout = -1.0;
    }
    if (poll_once(c, timeout) < 0)
        return NULL;
    if (loop_now(c, &now) < 0)
        return NULL;
    end = now + c->clock_resolution;
    while (PyList_GET_SIZE(sched)) {
        PyObject *h = PyList_GET_ITEM(sched, 0), *r;
        double w = when_of(c, h);
        if (w >= end)
            break;
        h = heap_pop(c, sched);
        if (h == NULL)
            return NULL;
        set_scheduled(c, h, Py_False);
        if (c->telemetry && now - w > 0) {
            double lag = now - w;
            if (lag > c->lag_max)
                c->lag_max = lag;
            c->lag_ewma += 0.05 * (lag - c->lag_ewma);
        }
        r = PyObject_CallOneArg(c->ready_append, h);
        Py_DECREF(h);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    ntodo = PyObject_Size(c->ready);
    if (ntodo < 0)
        return NULL;
    if (c->telemetry) {
        c->iterations++;
        c->handles_run += (unsigned long long)ntodo;
    }
    if (run && !c->debug) {
        PyObject *n = PyLong_FromSsize_t(ntodo), *r;
        if (n == NULL)
            return NULL;
        r = Core_run_ready(c, n);
        Py_DECREF(n);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        return PyLong_FromLong(0);
    }
    return PyLong_FromSsize_t(ntodo);
}

static PyObject *Core_time(Core *c, PyObject *unused)
{
    return PyFloat_FromDouble(mono_now());
}

/* poll(timeout): one wait-and-harvest (timeout None: no deadline). */
static PyObject *Core_poll(Core *c, PyObject *arg)
{
    double t = -1.0;
    if (arg != Py_None) {
        t = PyFloat_AsDouble(arg);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (t < 0)
            t = 0.0;
    }
    if (poll_once(c, t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int Core_traverse(Core *c, visitproc visit, void *arg)
{
    Py_VISIT(c->owners);
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
    return 0;
}

static int Core_clear(Core *c)
{
    Py_CLEAR(c->owners);
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
    return 0;
}

static void Core_dealloc(Core *c)
{
    PyObject_GC_UnTrack(c);
    Core_clear(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Core_methods[] = {
    {"submit_wait", (PyCFunction)(void (*)(void))Core_submit_wait, METH_FASTCALL,
     "submit_wait(wait, timeout) -> CQEs ready: flush the SQ, wait for one completion "
     "(at most timeout seconds; None: no deadline) when wait is true"},
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
    {"set_future_type", (PyCFunction)Core_set_future_type, METH_O, "the Future class to create"},
    {"get_debug", (PyCFunction)Core_get_debug, METH_NOARGS, "the loop's debug flag"},
    {"new_handle", (PyCFunction)(void (*)(void))Core_new_handle, METH_FASTCALL,
     "new_handle(callback, *args) -> asyncio.Handle (not scheduled)"},
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
    INTERN(s_recv_failed, "_recv_failed");
    INTERN(s_send_failed, "_send_failed");
    INTERN(s_fatal_error, "_fatal_error");
    INTERN(s_deliver, "_deliver");
    INTERN(s_maybe_pause, "_maybe_pause_protocol");
    INTERN(s_maybe_resume, "_maybe_resume_protocol");
    INTERN(s_migration_progress, "_migration_progress");
    INTERN(s_finish, "_finish");
    INTERN(s_do_shutdown, "_do_shutdown");
    INTERN(s_protocol_paused, "_protocol_paused");
    INTERN(s_data_received, "data_received");
    INTERN(s_slow_call_at, "_slow_call_at");
    INTERN(s_slow_call_later, "_slow_call_later");
    INTERN(s_dr_failed, "Fatal error: protocol.data_received() call failed.");
    if ((s_empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return NULL;
    if ((s_loop_kwnames = Py_BuildValue("(s)", "loop")) == NULL)
        return NULL;
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&StreamType) < 0 ||
        PyType_Ready(&WatchType) < 0)
        return NULL;
    m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    Py_INCREF(&StreamType);
    Py_INCREF(&WatchType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObject(m, "Stream", (PyObject *)&StreamType) < 0 ||
        PyModule_AddObject(m, "Watch", (PyObject *)&WatchType) < 0 ||
        PyModule_AddIntConstant(m, "OPEN", ST_OPEN) < 0 ||
        PyModule_AddIntConstant(m, "CLOSING", ST_CLOSING) < 0 ||
        PyModule_AddIntConstant(m, "LOST", ST_LOST) < 0 ||
        PyModule_AddIntConstant(m, "DONE", ST_DONE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
