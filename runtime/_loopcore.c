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

static PyObject *s_on_eof, *s_recv_failed, *s_send_failed, *s_fatal_error, *s_deliver,
    *s_maybe_pause, *s_maybe_resume, *s_migration_progress, *s_finish, *s_do_shutdown,
    *s_protocol_paused, *s_data_received, *s_empty, *s_dr_failed;

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
        if (s->lost_writes >= 5) {  /* asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES */
            PyObject *r = PyObject_CallMethod(s->transport ? s->transport : Py_None,
                                              "_log_lost_write", NULL);
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

static int Core_traverse(Core *c, visitproc visit, void *arg)
{
    Py_VISIT(c->owners);
    Py_VISIT(c->handlers);
    Py_VISIT(c->keep);
    Py_VISIT(c->on_message);
    Py_VISIT(c->on_error);
    Py_VISIT(c->dirty);
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
    {NULL}
};

static PyMemberDef Core_members[] = {
    {"now", T_DOUBLE, offsetof(Core, now), READONLY, "monotonic time after the last wait"},
    {"enobufs", T_ULONGLONG, offsetof(Core, enobufs), 0, "receives that found no buffer"},
    {"dispatched", T_ULONGLONG, offsetof(Core, dispatched), READONLY, "completions dispatched"},
    {"telemetry", T_INT, offsetof(Core, telemetry), READONLY, NULL},
    {"dirty", T_OBJECT, offsetof(Core, dirty), READONLY, "streams waiting for a flush"},
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

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_loopcore",
    "The event loop's per-event path in C: wait, harvest, dispatch, stream receive/write/send.",
    -1, NULL,
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
    INTERN(s_dr_failed, "Fatal error: protocol.data_received() call failed.");
    if ((s_empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return NULL;
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&StreamType) < 0)
        return NULL;
    m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    Py_INCREF(&StreamType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObject(m, "Stream", (PyObject *)&StreamType) < 0 ||
        PyModule_AddIntConstant(m, "OPEN", ST_OPEN) < 0 ||
        PyModule_AddIntConstant(m, "CLOSING", ST_CLOSING) < 0 ||
        PyModule_AddIntConstant(m, "LOST", ST_LOST) < 0 ||
        PyModule_AddIntConstant(m, "DONE", ST_DONE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
