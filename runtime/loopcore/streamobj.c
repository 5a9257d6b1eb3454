/* The Stream type: RingTransport's compiled base class.  This file holds what
 * happens once per connection (allocation, binding to a loop, the protocol,
 * the start handle, the ring half of the end, the close of the descriptor,
 * teardown, the unclosed-transport warning) and the type itself; the
 * per-event half (receive, write, flush, send) is in stream.c.
 *
 * Why a base class rather than an object the transport owns: the transport
 * and its stream were two GC-tracked objects in a reference cycle, plus a
 * __dict__ holding the transport's context, fd and two bound C methods (write
 * and writelines shadowing the class's, so a write needed no Python frame):
 * five tracked objects and a cycle per connection that only the collector
 * could break had the connection not ended cleanly.  Now the transport IS the
 * stream: write/writelines/is_closing/get_write_buffer_size are the type's own
 * C methods (no per-instance binding), the protocol, context and fd are C
 * fields, and nothing refers back to itself.
 *
 * The base is asyncio's transports._FlowControlMixin (isinstance checks for
 * asyncio.Transport hold, and the mixin's flow-control methods are inherited);
 * its five __slots__ occupy base_slots[], which this type traverses, clears
 * and frees.  Part of _loopcore.c's single translation unit. */

/* Where the base's _extra, _loop and _protocol_paused slots are (CPython sorts
 * a class's __slots__, so read from their member descriptors, not assumed). */
static Py_ssize_t off_extra, off_loop, off_protocol_paused;

/* _bind_protocol(protocol, buffered, context=None): data_received is called
 * inside context (a contextvars.Context) when one is given. */
static PyObject *Stream_bind_protocol(Stream *s, PyObject *args)
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

/* connection_lost ran: drop the protocol (and its bound data_received, which
 * refers to it) and the context, and call nothing back from now on.  What
 * breaks the transport <-> protocol cycle, as asyncio's transports do by
 * setting _protocol to None. */
static PyObject *Stream_detach_objects(Stream *s, PyObject *unused)
{
    s->detached = 1;
    Py_CLEAR(s->fifo);
    Py_CLEAR(s->protocol);
    Py_CLEAR(s->data_received);
    Py_CLEAR(s->context);
    Py_RETURN_NONE;
}

/* _release_ring(freed_ud_base): the ring half of a transport's _finish in one
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

/* _start(protocol): the handle a new transport schedules (in its context):
 * protocol.connection_made(transport), then arm the receive.  One handle where
 * there were two (connection_made, then arm_recv), in the same order: no data
 * can reach the protocol before connection_made ran, wherever the transport
 * was made (a dispatch, a ready handle, a deferred dispatch).  The receive is
 * armed even when connection_made raised (the error is then reported by the
 * handle, as before). */
static PyObject *Stream_start(Stream *s, PyObject *protocol)
{
    PyObject *r, *margs[2] = {protocol, (PyObject *)s};
    r = PyObject_VectorcallMethod(s_connection_made, margs, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                  NULL);
    if (r == NULL) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        if (stream_arm_recv(s) < 0) {
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

/* _close_fd(fd): close(2) the transport's descriptor by an SQE riding the next
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

/* _rebind(core, slot, ud_recv, ud_send): join a loop's Core (the first bind,
 * or a migration's move): new slot and user_data. */
static PyObject *Stream_rebind(Stream *s, PyObject *const *args, Py_ssize_t nargs)
{
    long slot;
    unsigned long long ur, us;
    if (nargs != 4 || !PyObject_TypeCheck(args[0], &CoreType)) {
        PyErr_SetString(PyExc_TypeError, "_rebind(core, slot, ud_recv, ud_send)");
        return NULL;
    }
    slot = PyLong_AsLong(args[1]);
    ur = PyLong_AsUnsignedLongLong(args[2]);
    us = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (slot < -1 || slot > INT_MAX)
        return PyErr_Format(PyExc_ValueError, "bad slot %ld", slot);
    Py_XSETREF(s->core, (Core *)Py_NewRef(args[0]));
    s->slot = (int)slot;
    s->ud_recv = ur;
    s->ud_send = us;
    Py_RETURN_NONE;
}

/* _finish(exc): the connection's end on this side (state LOST): release the
 * ring resources now through the loop's finish_stream (cancel what is in
 * flight, empty the slot, forget the user_data) and queue connection_lost, in
 * the transport's context, for the next iteration.  A no-op once the slot is
 * released.  (RingTransport's Python _finish was two frames per connection
 * with close().) */
static int stream_finish(Stream *s, PyObject *exc)
{
    Core *c = s->core;
    PyObject *self = (PyObject *)s, *loop = *(PyObject **)((char *)s + off_loop);
    PyObject *r, *cb, *args[4];
    if (s->slot < 0)
        return 0;
    if (c == NULL || loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "transport not bound to a loop");
        return -1;
    }
    Py_INCREF(loop);
    if (!c->closed) {
        PyObject *fd = PyLong_FromLong(s->fd);
        if (fd == NULL)
            goto fail;
        args[0] = loop;
        args[1] = self;
        args[2] = fd;
        r = PyObject_VectorcallMethod(s_finish_stream, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      NULL);
        Py_DECREF(fd);
    } else {
        s->slot = -1;
        r = PyObject_CallMethodNoArgs(self, s_unbind);
    }
    if (r == NULL)
        goto fail;
    Py_DECREF(r);
    s->state = ST_LOST;
    if ((cb = PyObject_GetAttr(self, s_call_conn_lost)) == NULL)
        goto fail;
    args[1] = cb;
    args[2] = exc;
    args[3] = s->context ? s->context : Py_None;
    if (c->debug || c->closed || s->context == NULL) {
        /* asyncio's call_soon: debug checks, or the error a closed loop raises */
        args[0] = loop;
        r = PyObject_VectorcallMethod(s_call_soon, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      s_context_kw);
    } else {
        PyObject *h = make_handle(c, c->handle_type, args + 1, 2, s->context);
        r = h == NULL ? NULL : PyObject_CallOneArg(c->ready_append, h);
        Py_XDECREF(h);
    }
    Py_DECREF(cb);
    if (r == NULL)
        goto fail;
    Py_DECREF(r);
    Py_DECREF(loop);
    /* A move in progress waits for this transport to go quiet; it never will
     * now (e.g. the peer reset it): fail the move instead of hanging. */
    if (s->migrating)
        return call_transport(s, s_migration_progress, NULL, NULL);
    return 0;
fail:
    Py_DECREF(loop);
    return -1;
}

static PyObject *Stream_finish(Stream *s, PyObject *exc)
{
    if (stream_finish(s, exc) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* close(): asyncio's Transport.close: reads stop now, queued writes still go
 * out, then the end (_finish).  While a move prepares, the new worker
 * finishes the close once the file arrives. */
static PyObject *Stream_close(Stream *s, PyObject *unused)
{
    if (s->state != ST_OPEN)
        Py_RETURN_NONE;
    s->state = ST_CLOSING;
    s->reading = 0;
    if (!s->migrating && s->inflight == NULL && PyList_GET_SIZE(s->wbuf) == 0 &&
        stream_finish(s, Py_None) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Stream_is_closing(Stream *s, PyObject *unused)
{
    return PyBool_FromLong(s->state != ST_OPEN);
}

static PyObject *Stream_get_write_buffer_size(Stream *s, PyObject *unused)
{
    return PyLong_FromSsize_t(s->wsize);
}

/* Connection ids, process-wide, from 1 (the GIL serialises the increment). */
static unsigned long long next_conn_id;

/* A new transport: open, reading, not bound to any loop yet (slot -1). */
static PyObject *Stream_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    Stream *s = (Stream *)type->tp_alloc(type, 0);
    if (s == NULL)
        return NULL;
    if ((s->wbuf = PyList_New(0)) == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    s->conn_id = ++next_conn_id;
    s->slot = -1;
    s->fd = -1;
    s->reading = 1;
    s->state = ST_OPEN;
    s->high_water = 64 * 1024;
    return (PyObject *)s;
}

/* asyncio's transports warn about a transport dropped while open (their
 * __del__); here in C, so a closed transport's end runs no Python frame.
 * Only a transport that was bound to a loop can be unclosed. */
static void Stream_finalize(PyObject *self)
{
    Stream *s = (Stream *)self;
    PyObject *t, *v, *tb;
    if (s->core == NULL || s->state == ST_DONE)
        return;
    PyErr_Fetch(&t, &v, &tb);
    if (PyErr_ResourceWarning(self, 1, "unclosed transport %R", self) < 0)
        PyErr_WriteUnraisable(self);
    PyErr_Restore(t, v, tb);
}

static int Stream_traverse(Stream *s, visitproc visit, void *arg)
{
    int i;
    Py_VISIT(Py_TYPE(s));
    for (i = 0; i < STREAM_BASE_SLOTS; i++)
        Py_VISIT(s->base_slots[i]);
    Py_VISIT(s->core);
    Py_VISIT(s->protocol);
    Py_VISIT(s->data_received);
    Py_VISIT(s->context);
    Py_VISIT(s->held);
    Py_VISIT(s->wbuf);
    Py_VISIT(s->inflight);
    Py_VISIT(s->fifo);
    Py_VISIT(s->sock);
    Py_VISIT(s->server);
    Py_VISIT(s->migrate_waiter);
    return 0;
}

static int Stream_clear(Stream *s)
{
    int i;
    for (i = 0; i < STREAM_BASE_SLOTS; i++)
        Py_CLEAR(s->base_slots[i]);
    Py_CLEAR(s->core);
    Py_CLEAR(s->protocol);
    Py_CLEAR(s->data_received);
    Py_CLEAR(s->context);
    Py_CLEAR(s->held);
    Py_CLEAR(s->wbuf);
    Py_CLEAR(s->inflight);
    Py_CLEAR(s->fifo);
    Py_CLEAR(s->sock);
    Py_CLEAR(s->server);
    Py_CLEAR(s->migrate_waiter);
    return 0;
}

static void Stream_dealloc(Stream *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    Stream_clear(s);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);  /* a heap type: each instance holds a reference to it */
}

static PyMethodDef Stream_methods[] = {
    {"write", (PyCFunction)Stream_write, METH_O, "Queue bytes; flushed once per loop iteration."},
    {"writelines", (PyCFunction)Stream_writelines, METH_O, "write(b''.join(iterable))"},
    {"close", (PyCFunction)Stream_close, METH_NOARGS,
     "Stop reading; send what is queued, then end the connection."},
    {"_finish", (PyCFunction)Stream_finish, METH_O,
     "_finish(exc): release the ring resources now; connection_lost(exc) next iteration."},
    {"is_closing", (PyCFunction)Stream_is_closing, METH_NOARGS,
     "True once close() or abort() was called (or the connection was lost)."},
    {"get_write_buffer_size", (PyCFunction)Stream_get_write_buffer_size, METH_NOARGS,
     "Bytes queued and in flight."},
    {"_flush", (PyCFunction)Stream_flush, METH_NOARGS,
     "Hand the queued writes to the ring now (the loop does this once per iteration)."},
    {"_arm_recv", (PyCFunction)Stream_arm_recv, METH_NOARGS, "Start the multishot receive."},
    {"_mark_dirty", (PyCFunction)Stream_mark_dirty, METH_NOARGS, "Queue for the next flush."},
    {"_start", (PyCFunction)Stream_start, METH_O,
     "_start(protocol): protocol.connection_made(self), then arm the receive"},
    {"_close_fd", (PyCFunction)Stream_close_fd, METH_O,
     "_close_fd(fd): close the descriptor by an SQE on the next enter"},
    {"_release_ring", (PyCFunction)Stream_release_ring, METH_O,
     "_release_ring(freed_ud_base): cancel what is in flight, empty the slot, forget the user_data"},
    {"_set_fifo", (PyCFunction)Stream_set_fifo, METH_O, "Match replies to futures (replies.c)."},
    {"_bind_protocol", (PyCFunction)Stream_bind_protocol, METH_VARARGS,
     "_bind_protocol(p, buffered, context=None)"},
    {"_detach_objects", (PyCFunction)Stream_detach_objects, METH_NOARGS,
     "connection_lost ran: drop the protocol and context, call nothing back."},
    {"_rebind", (PyCFunction)(void (*)(void))Stream_rebind, METH_FASTCALL,
     "_rebind(core, slot, ud_recv, ud_send)"},
    {"_on_recv", (PyCFunction)Stream_on_recv, METH_VARARGS, "_on_recv(res, flags, data=None)"},
    {"_on_send", (PyCFunction)Stream_on_send, METH_VARARGS, "_on_send(res, flags=0)"},
    {NULL}
};

/* What the Python half (runtime/transport.py) and the tests read and set.
 * The underscored ones mirror asyncio's own transport attributes. */
#define SM(name, type, field, fl) {name, type, offsetof(Stream, field), fl, NULL}
static PyMemberDef Stream_members[] = {
    SM("_protocol", T_OBJECT, protocol, READONLY),
    SM("_context", T_OBJECT, context, READONLY),
    SM("_fd", T_INT, fd, 0),
    SM("conn_id", T_ULONGLONG, conn_id, READONLY),
    SM("migrations", T_PYSSIZET, migrations, 0),
    SM("_sock", T_OBJECT, sock, 0),
    SM("_server", T_OBJECT, server, 0),
    SM("_migrate_waiter", T_OBJECT, migrate_waiter, 0),
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

static PyType_Slot Stream_slots[] = {
    {Py_tp_doc, "RingTransport's compiled base: receive, write buffer, send, lifecycle."},
    {Py_tp_new, Stream_new},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_finalize, Stream_finalize},
    {Py_tp_methods, Stream_methods},
    {Py_tp_members, Stream_members},
    {0, NULL},
};

static PyType_Spec Stream_spec = {
    .name = "ringleader.runtime._loopcore.Stream",
    .basicsize = sizeof(Stream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_FINALIZE,
    .slots = Stream_slots,
};

static int base_slot_offset(PyObject *base, const char *name, Py_ssize_t *out)
{
    PyObject *d = PyObject_GetAttrString(base, name);
    int ok;
    if (d == NULL)
        return -1;
    ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
         ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok)
        *out = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (!ok || *out < (Py_ssize_t)sizeof(PyObject) ||
        *out >= (Py_ssize_t)offsetof(Stream, core)) {
        PyErr_Format(PyExc_ImportError, "_FlowControlMixin.%s is not a slot _loopcore knows", name);
        return -1;
    }
    return 0;
}

/* The Stream type, derived from asyncio.transports._FlowControlMixin.  Its
 * layout is probed, not assumed: the base must be exactly the object header
 * plus its five slots (CPython 3.11-3.14), with no __dict__ or weakref list. */
static PyTypeObject *make_stream_type(void)
{
    PyObject *mod, *base, *bases, *t = NULL;
    PyTypeObject *b;
    mod = PyImport_ImportModule("asyncio.transports");
    if (mod == NULL)
        return NULL;
    base = PyObject_GetAttrString(mod, "_FlowControlMixin");
    Py_DECREF(mod);
    if (base == NULL)
        return NULL;
    b = (PyTypeObject *)base;
    if (!PyType_Check(base) || b->tp_basicsize != (Py_ssize_t)offsetof(Stream, core) ||
        b->tp_itemsize != 0 || b->tp_dictoffset != 0 || b->tp_weaklistoffset != 0) {
        PyErr_Format(PyExc_ImportError,
                     "asyncio.transports._FlowControlMixin's layout is not the one "
                     "_loopcore.Stream extends (basicsize %zd, expected %zd)",
                     PyType_Check(base) ? b->tp_basicsize : (Py_ssize_t)-1,
                     (Py_ssize_t)offsetof(Stream, core));
        Py_DECREF(base);
        return NULL;
    }
    if (base_slot_offset(base, "_extra", &off_extra) < 0 || base_slot_offset(base, "_loop", &off_loop) < 0 ||
        base_slot_offset(base, "_protocol_paused", &off_protocol_paused) < 0) {
        Py_DECREF(base);
        return NULL;
    }
    bases = PyTuple_Pack(1, base);
    Py_DECREF(base);
    if (bases != NULL)
        t = PyType_FromSpecWithBases(&Stream_spec, bases);
    Py_XDECREF(bases);
    return (PyTypeObject *)t;
}
