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

/* Drop user_data ud from the dispatcher's handler table (absent is fine). */
static int core_forget_ud(Core *c, unsigned long long ud)
{
    PyObject *key = PyLong_FromUnsignedLongLong(ud);
    int rc;
    if (key == NULL)
        return -1;
    rc = PyDict_DelItem(c->handlers, key);
    Py_DECREF(key);
    if (rc < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        rc = 0;
    }
    return rc;
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
    s->sends++;
    res = rl_prep_send_fixed(s->core->r, s->slot, PyBytes_AS_STRING(data),
                             (unsigned)PyBytes_GET_SIZE(data), s->ud_send);
    if (res) {
        errno = -res;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* Call protocol.data_received(data) inside the transport's context, as
 * asyncio does (Context.run): entered here with PyContext_Enter/Exit rather
 * than through a Python-level Context.run wrapper (38-60 ns a call).  When
 * that context is already the current one (a transport made without its own,
 * or a nested call) it is called as is: entering it twice would raise. */
static PyObject *call_in_context(PyObject *context, PyObject *fn, PyObject *arg)
{
    PyObject *r;
    if (context == NULL || PyThreadState_Get()->context == context)
        return PyObject_CallOneArg(fn, arg);
    if (PyContext_Enter(context) < 0)
        return NULL;
    r = PyObject_CallOneArg(fn, arg);
    if (PyContext_Exit(context) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static int stream_deliver(Stream *s, PyObject *data)
{
    PyObject *r = Py_None;
    if (s->buffered)
        return call_transport(s, s_deliver, data, NULL);
    if (s->fifo != NULL) {
        if (fifo_deliver(s, data) == 0)  /* replies matched to their waiters (replies.c) */
            return 0;
        r = NULL;
    } else if (s->data_received != NULL) {
        r = call_in_context(s->context, s->data_received, data);
    } else if (s->protocol == NULL) {
        return 0;  /* detached: connection_lost ran */
    } else {
        /* no data_received when set_protocol ran: look it up now, so the
         * AttributeError (or a late-added method) comes out as asyncio's would */
        PyObject *dr = PyObject_GetAttr(s->protocol, s_data_received);
        r = dr == NULL ? NULL : call_in_context(s->context, dr, data);
        Py_XDECREF(dr);
    }
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

/* set_protocol(protocol, buffered, context=None): data_received is called
 * inside context (a contextvars.Context) when one is given. */
static PyObject *Stream_set_protocol(Stream *s, PyObject *args)
{
    PyObject *protocol, *dr = NULL, *context = Py_None;
    int buffered;
    if (!PyArg_ParseTuple(args, "Op|O", &protocol, &buffered, &context))
        return NULL;
    if (context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context or None");
        return NULL;
    }
    if (!buffered) {
        dr = PyObject_GetAttr(protocol, s_data_received);
        if (dr == NULL) {
            /* asyncio looks data_received up when data arrives: a protocol
             * without one (get_buffer, but not a BufferedProtocol) is accepted
             * and fails then, through the fatal-error path (stream_deliver). */
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return NULL;
            PyErr_Clear();
        }
    }
    Py_INCREF(protocol);
    Py_XSETREF(s->protocol, protocol);
    Py_XSETREF(s->data_received, dr);
    Py_XSETREF(s->context, context == Py_None ? NULL : Py_NewRef(context));
    s->buffered = (char)buffered;
    Py_RETURN_NONE;
}

/* Release the references to the transport and protocol (connection_lost ran). */
static PyObject *Stream_detach_objects(Stream *s, PyObject *unused)
{
    Py_CLEAR(s->fifo);
    Py_CLEAR(s->protocol);
    Py_CLEAR(s->data_received);
    Py_CLEAR(s->context);
    Py_CLEAR(s->transport);
    Py_RETURN_NONE;
}

/* release_ring(freed_ud_base): the ring half of a transport's _finish in one
 * call (it ran as four Python methods and three cffi calls per connection):
 * cancel the receive and the send still in flight by user_data (not by slot:
 * the slot is emptied now and may be reused before a cancel reaches the
 * kernel), keep the in-flight bytes alive until that send's last completion
 * (the ring's keep table), empty the fixed slot with a close SQE whose
 * completion (user_data freed_ud_base | slot) frees the slot for reuse, and
 * drop both user_data from the dispatcher, so late completions find no
 * handler.  Leaves slot -1.  A no-op when the slot is already released. */
static PyObject *Stream_release_ring(Stream *s, PyObject *arg)
{
    Core *c = s->core;
    unsigned long long freed = PyLong_AsUnsignedLongLong(arg);
    PyObject *key;
    int res = 0, slot = s->slot;
    if (freed == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (slot < 0)
        Py_RETURN_NONE;
    if (!ring_live(c))
        return NULL;
    if (s->recv_armed)
        res = rl_prep_cancel(c->r, s->ud_recv, 0, 0, 0);
    if (!res && s->inflight != NULL) {
        res = rl_prep_cancel(c->r, s->ud_send, 0, 0, 0);
        if (!res) {
            if ((key = PyLong_FromUnsignedLongLong(s->ud_send)) == NULL)
                return NULL;
            res = PyDict_SetItem(c->keep, key, s->inflight);
            Py_DECREF(key);
            if (res < 0)
                return NULL;
        }
    }
    if (!res)
        res = rl_prep_close_direct(c->r, (unsigned)slot, freed | (unsigned)slot, 0);
    if (res) {
        errno = -res;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->slot = -1;
    if (core_forget_ud(c, s->ud_recv) < 0 || core_forget_ud(c, s->ud_send) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* start(protocol, transport): the handle a new transport schedules (in its
 * context): protocol.connection_made(transport), then arm the receive.  One
 * handle where there were two (connection_made, then arm_recv), in the same
 * order: no data can reach the protocol before connection_made ran, wherever
 * the transport was made (a dispatch, a ready handle, a deferred dispatch).
 * The receive is armed even when connection_made raised (the error is then
 * reported by the handle, as before). */
static PyObject *Stream_start(Stream *s, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r, *margs[2];
    int armed;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "start(protocol, transport)");
        return NULL;
    }
    margs[0] = args[0];
    margs[1] = args[1];
    r = PyObject_VectorcallMethod(s_connection_made, margs, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                  NULL);
    if (r == NULL) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        armed = stream_arm_recv(s);
        if (armed < 0) {
            /* the arming's error is the newer one: report that */
            Py_XDECREF(t);
            Py_XDECREF(v);
            Py_XDECREF(tb);
            return NULL;
        }
        PyErr_Restore(t, v, tb);
        return NULL;
    }
    Py_DECREF(r);
    if (stream_arm_recv(s) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* close_fd(fd): close(2) the transport's descriptor by an SQE riding the next
 * enter, result ignored.  Here rather than through the cffi binding's
 * Ring.close_fd: cffi's wrapper releases and retakes the GIL around every call
 * (a futex wake per connection once the process has other threads). */
static PyObject *Stream_close_fd(Stream *s, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    int res;
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX)
        return PyErr_Format(PyExc_ValueError, "bad fd %ld", fd);
    if (!ring_live(s->core))
        return NULL;
    res = rl_prep_close(s->core->r, (int)fd, 0, 0);
    if (res) {
        errno = -res;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
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
    Py_VISIT(s->context);
    Py_VISIT(s->held);
    Py_VISIT(s->wbuf);
    Py_VISIT(s->inflight);
    Py_VISIT(s->fifo);
    return 0;
}

static int Stream_clear(Stream *s)
{
    Py_CLEAR(s->core);
    Py_CLEAR(s->transport);
    Py_CLEAR(s->protocol);
    Py_CLEAR(s->data_received);
    Py_CLEAR(s->context);
    Py_CLEAR(s->held);
    Py_CLEAR(s->wbuf);
    Py_CLEAR(s->inflight);
    Py_CLEAR(s->fifo);
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
    {"start", (PyCFunction)(void (*)(void))Stream_start, METH_FASTCALL,
     "start(protocol, transport): protocol.connection_made(transport), then arm the receive"},
    {"close_fd", (PyCFunction)Stream_close_fd, METH_O,
     "close_fd(fd): close the descriptor by an SQE on the next enter"},
    {"release_ring", (PyCFunction)Stream_release_ring, METH_O,
     "release_ring(freed_ud_base): cancel what is in flight, empty the slot, forget the user_data"},
    {"set_fifo", (PyCFunction)Stream_set_fifo, METH_O, "Match replies to futures (replies.c)."},
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_VARARGS, "set_protocol(p, buffered, context=None)"},
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
    SM("sends", T_ULONGLONG, sends, READONLY),
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
