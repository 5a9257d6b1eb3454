/* Stream: the hot half of a RingTransport (receive, write buffer, send, counters).
 * Part of _loopcore.c's single translation unit (included there, not compiled alone). */

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

/* At most this much of the queue is joined into one send: a queue of a GiB
 * of small writes is sent in 1-MiB pieces, never copied whole. */
#define FLUSH_JOIN_MAX (1 << 20)

/* Hand the queued writes to the ring as one send (at most one in flight). */
static int stream_flush(Stream *s)
{
    PyObject *data;
    Py_ssize_t n, total;
    int res;
    s->dirty = 0;
    n = PyList_GET_SIZE(s->wbuf);
    if (s->inflight != NULL || n == 0 || s->state >= ST_LOST || s->migrating)
        return 0;
    if (!ring_live(s->core))
        return -1;
    total = PyBytes_GET_SIZE(PyList_GET_ITEM(s->wbuf, 0));
    if (total < FLUSH_JOIN_MAX) {
        Py_ssize_t k = 1;
        while (k < n) {
            Py_ssize_t more = PyBytes_GET_SIZE(PyList_GET_ITEM(s->wbuf, k));
            if (total + more > FLUSH_JOIN_MAX)
                break;
            total += more;
            k++;
        }
        n = k;
    } else {
        n = 1;
    }
    if (n == 1) {
        data = PyList_GET_ITEM(s->wbuf, 0);
        Py_INCREF(data);
    } else {
        PyObject *part = PyList_GetSlice(s->wbuf, 0, n);
        if (part == NULL)
            return -1;
        data = _PyBytes_Join(s_empty, part);
        Py_DECREF(part);
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
    s->inflight_off = 0;
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
        /* A move waiting for this receive to end must be told (it was not, and
         * the move hung until its caller gave up). */
        if (s->migrating && !s->recv_armed)
            return call_transport(s, s_migration_progress, NULL, NULL);
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
    len = PyBytes_GET_SIZE(data) - s->inflight_off;
    if (res < len) {
        /* Short send: resend the rest before anything queued after it, from
         * the same bytes (a copy of the rest per short send made sending a
         * large buffer quadratic). */
        s->inflight_off += res;
        /* Also while a move prepares: it waits for this send to finish. */
        if (s->state < ST_LOST) {
            int rc = rl_prep_send_fixed(s->core->r, s->slot,
                                        PyBytes_AS_STRING(data) + s->inflight_off,
                                        (unsigned)(len - res), s->ud_send);
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
    /* While a move prepares, bytes written meanwhile wait and go with it: the
     * move is told this send ended. */
    if (s->migrating)
        return call_transport(s, s_migration_progress, NULL, NULL);
    if (PyList_GET_SIZE(s->wbuf))
        return stream_mark_dirty(s);
    if (s->state == ST_CLOSING)
        return call_transport(s, s_finish, Py_None, NULL);
    if (s->wstate == W_EOF_PENDING)
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
    if (s->wstate != W_OPEN) {
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

/* writelines(iterable): asyncio's WriteTransport.writelines (join, then write) */
static PyObject *Stream_writelines(Stream *s, PyObject *iterable)
{
    PyObject *data, *r;
    data = PyObject_CallMethod(s_empty, "join", "O", iterable);
    if (data == NULL)
        return NULL;
    r = Stream_write(s, data);
    Py_DECREF(data);
    return r;
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
    {"writelines", (PyCFunction)Stream_writelines, METH_O, "write(b''.join(iterable))"},
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
    SM("write_state", T_INT, wstate, 0),
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
