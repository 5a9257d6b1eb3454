/* Stream: the per-event half of a RingTransport (receive, write buffer, send,
 * counters).  The Stream type is RingTransport's compiled base class (the
 * transport IS the stream; its construction, teardown and the type itself are
 * in streamobj.c).  Part of _loopcore.c's single translation unit (included
 * there, not compiled alone). */

/* ------------------------------------------------------------ Stream */

/* Call transport.<name>(*args) (a method of the Python subclass); returns 0,
 * or -1 with the exception set.  Nothing once connection_lost ran (detached). */
static int call_transport(Stream *s, PyObject *name, PyObject *arg1, PyObject *arg2)
{
    PyObject *args[3] = {(PyObject *)s, arg1, arg2};
    size_t n = 1 + (arg1 != NULL) + (arg2 != NULL);
    PyObject *r;
    if (s->detached)
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
        if (!s->reading || s->migrating || (s->held != NULL && PyList_GET_SIZE(s->held))) {
            /* Paused, moving, or older bytes still queued: keep the order.
             * (The list is made on first use: most connections never hold.) */
            if (s->held == NULL && (s->held = PyList_New(0)) == NULL)
                return -1;
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
        p = s->detached ? NULL : PyObject_GetAttr((PyObject *)s, s_protocol_paused);
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
        return stream_finish(s, Py_None);
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

