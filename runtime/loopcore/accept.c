/* Acceptor: a listener's multishot-accept handler that turns each accepted
 * descriptor into a transport without a Python frame of its own.
 *
 * What it does, per accepted connection (a CQE with res >= 0 and F_MORE):
 * the protocol factory is called in a copy of the server's context (as
 * asyncio does), the transport (the subclass of Stream the loop serves with,
 * RingTransport) is allocated and its fields set here, the loop's
 * install_file and bind_stream (the TransportLoop seam) and the server's
 * attach are called, and the handle that runs connection_made and arms the
 * receive (Stream._start) is queued, in that copied context.  This is
 * RingTransport.__init__ for an accepted socket, minus its Python: the
 * closure, _accepted and __init__ frames were ~2.5 us of the ~10 us of user
 * CPU a connection-per-request cost (py-spy, docs/loop.md "Fourth pass").
 *
 * What it does not do: anything else.  Errors, the last CQE of a multishot
 * accept (re-arming), debug mode and listeners that need TLS or TCP_NODELAY
 * set per socket are the Python handler's (``slow``), which also reports a
 * failed set-up.  Part of _loopcore.c's single translation unit. */

typedef struct {
    PyObject_HEAD
    Core *core;
    PyObject *loop;
    PyTypeObject *cls;        /* the transport class (a Stream subclass) */
    PyObject *factory;        /* the protocol factory */
    PyObject *context;        /* the server's context: copied per connection */
    PyObject *server;         /* the asyncio Server, or None */
    PyObject *make_sock;      /* callable(fd, kind) -> the transport's _sock (AcceptedSocket) */
    PyObject *kind;           /* the listener's (family, type, proto) */
    PyObject *install_file;   /* loop.install_file */
    PyObject *bind_stream;    /* loop.bind_stream */
    PyObject *attach;         /* callable(server, transport), or None */
    PyObject *buffered_cls;   /* asyncio.BufferedProtocol */
    PyObject *slow;           /* callable(res, flags): everything but the fast path */
    PyObject *on_error;       /* callable(sock_or_fd, exc): close it, report exc */
    Py_ssize_t high_water;
    vectorcallfunc vectorcall;
} Acceptor;

static PyTypeObject AcceptorType;

/* The transport for accepted descriptor fd; NULL with the exception set.
 * *sockp receives the socket object once made (the caller closes it on error). */
static PyObject *acceptor_make(Acceptor *a, int fd, PyObject **sockp)
{
    Core *c = a->core;
    PyObject *ctx, *protocol = NULL, *t = NULL, *r, *fdo = NULL, *slot = NULL, *h, *hargs[3];
    PyObject *dr = NULL;
    Stream *s;
    int buffered;
    double now;

    ctx = PyContext_Copy(a->context);
    if (ctx == NULL)
        return NULL;
    if (PyContext_Enter(ctx) < 0)
        goto fail;
    protocol = PyObject_CallNoArgs(a->factory);
    if (PyContext_Exit(ctx) < 0 || protocol == NULL)
        goto fail;
    if ((fdo = PyLong_FromLong(fd)) == NULL)
        goto fail;
    if ((*sockp = PyObject_CallFunctionObjArgs(a->make_sock, fdo, a->kind, NULL)) == NULL)
        goto fail;
    if ((buffered = PyObject_IsInstance(protocol, a->buffered_cls)) < 0)
        goto fail;
    if (!buffered) {
        dr = PyObject_GetAttr(protocol, s_data_received);
        if (dr == NULL) {
            /* as Stream._bind_protocol: a missing data_received fails when data comes */
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                goto fail;
            PyErr_Clear();
        }
    }
    t = a->cls->tp_new(a->cls, s_empty_tuple, NULL);
    if (t == NULL)
        goto fail;
    s = (Stream *)t;
    /* _FlowControlMixin's slots: _extra (made on first use), _loop, _protocol_paused */
    *(PyObject **)((char *)t + off_extra) = Py_NewRef(Py_None);
    *(PyObject **)((char *)t + off_loop) = Py_NewRef(a->loop);
    *(PyObject **)((char *)t + off_protocol_paused) = Py_NewRef(Py_False);
    s->sock = Py_NewRef(*sockp);
    s->server = Py_NewRef(a->server);
    s->fd = fd;
    s->high_water = a->high_water;
    /* the fixed slot and the dispatcher's user_data, through the loop's seam */
    if ((slot = PyObject_CallOneArg(a->install_file, fdo)) == NULL)
        goto fail;
    hargs[0] = t;
    hargs[1] = slot;
    hargs[2] = fdo;
    if ((r = PyObject_Vectorcall(a->bind_stream, hargs, 3, NULL)) == NULL)
        goto fail;
    Py_DECREF(r);
    s->protocol = Py_NewRef(protocol);
    s->data_received = dr;
    dr = NULL;
    s->context = Py_NewRef(ctx);
    s->buffered = (char)buffered;
    if (loop_now(c, &now) < 0)
        goto fail;
    s->last_active = now;
    if (a->server != Py_None) {
        if ((r = PyObject_CallFunctionObjArgs(a->attach, a->server, t, NULL)) == NULL)
            goto fail;
        Py_DECREF(r);
    }
    /* One handle, in the connection's context: connection_made, then the receive. */
    hargs[0] = s_start_method;
    hargs[1] = t;
    hargs[2] = protocol;
    h = make_handle(c, c->handle_type, hargs, 3, ctx);
    if (h == NULL)
        goto fail;
    r = PyObject_CallOneArg(c->ready_append, h);
    Py_DECREF(h);
    if (r == NULL)
        goto fail;
    Py_DECREF(r);
    Py_DECREF(slot);
    Py_DECREF(fdo);
    Py_DECREF(protocol);
    Py_DECREF(ctx);
    return t;
fail:
    Py_XDECREF(dr);
    Py_XDECREF(slot);
    Py_XDECREF(fdo);
    Py_XDECREF(protocol);
    Py_XDECREF(t);
    Py_DECREF(ctx);
    return NULL;
}

/* handler(res, flags), as the dispatcher calls every handler. */
static PyObject *Acceptor_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames)
{
    Acceptor *a = (Acceptor *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    long res;
    unsigned long flags;
    PyObject *t, *sock = NULL;
    if (nargs < 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "Acceptor(res, flags)");
        return NULL;
    }
    res = PyLong_AsLong(args[0]);
    flags = PyLong_AsUnsignedLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (res < 0 || res > INT_MAX || !(flags & IORING_CQE_F_MORE) || a->core->debug ||
        a->core->closed)
        return PyObject_Vectorcall(a->slow, args, nargs, NULL);
    t = acceptor_make(a, (int)res, &sock);
    if (t == NULL) {
        PyObject *exc, *r;
        if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
            PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            Py_XDECREF(sock);
            return NULL;
        }
        exc = PyErr_GetRaisedException_compat();
        if (sock == NULL && (sock = PyLong_FromLong(res)) == NULL) {
            Py_DECREF(exc);
            return NULL;
        }
        r = PyObject_CallFunctionObjArgs(a->on_error, sock, exc, NULL);
        Py_DECREF(exc);
        Py_DECREF(sock);
        return r;
    }
    Py_DECREF(t);
    Py_DECREF(sock);
    Py_RETURN_NONE;
}

static int Acceptor_init(Acceptor *a, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"core", "loop", "cls", "factory", "context", "server", "make_sock",
                             "install_file", "bind_stream", "attach", "buffered_cls", "slow",
                             "on_error", "kind", "high_water", NULL};
    PyObject *core, *cls;
    PyObject *o[12];
    Py_ssize_t hw;
    int i;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO!OOOOOOOOOOOn", kwlist, &CoreType, &core,
                                     &o[0], &PyType_Type, &cls, &o[1], &o[2], &o[3], &o[4], &o[5],
                                     &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &hw))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)cls, StreamType)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a subclass of Stream");
        return -1;
    }
    if (!PyContext_CheckExact(o[2])) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context");
        return -1;
    }
    for (i = 0; i < 12; i++)
        Py_INCREF(o[i]);
    Py_INCREF(core);
    Py_INCREF(cls);
    Py_XSETREF(a->core, (Core *)core);
    Py_XSETREF(a->cls, (PyTypeObject *)cls);
    Py_XSETREF(a->loop, o[0]);
    Py_XSETREF(a->factory, o[1]);
    Py_XSETREF(a->context, o[2]);
    Py_XSETREF(a->server, o[3]);
    Py_XSETREF(a->make_sock, o[4]);
    Py_XSETREF(a->install_file, o[5]);
    Py_XSETREF(a->bind_stream, o[6]);
    Py_XSETREF(a->attach, o[7]);
    Py_XSETREF(a->buffered_cls, o[8]);
    Py_XSETREF(a->slow, o[9]);
    Py_XSETREF(a->on_error, o[10]);
    Py_XSETREF(a->kind, o[11]);
    a->high_water = hw;
    a->vectorcall = Acceptor_vectorcall;
    return 0;
}

static int Acceptor_traverse(Acceptor *a, visitproc visit, void *arg)
{
    Py_VISIT(a->core);
    Py_VISIT(a->loop);
    Py_VISIT(a->cls);
    Py_VISIT(a->factory);
    Py_VISIT(a->context);
    Py_VISIT(a->server);
    Py_VISIT(a->make_sock);
    Py_VISIT(a->install_file);
    Py_VISIT(a->bind_stream);
    Py_VISIT(a->attach);
    Py_VISIT(a->buffered_cls);
    Py_VISIT(a->slow);
    Py_VISIT(a->on_error);
    Py_VISIT(a->kind);
    return 0;
}

static int Acceptor_clear(Acceptor *a)
{
    Py_CLEAR(a->core);
    Py_CLEAR(a->loop);
    Py_CLEAR(a->cls);
    Py_CLEAR(a->factory);
    Py_CLEAR(a->context);
    Py_CLEAR(a->server);
    Py_CLEAR(a->make_sock);
    Py_CLEAR(a->install_file);
    Py_CLEAR(a->bind_stream);
    Py_CLEAR(a->attach);
    Py_CLEAR(a->buffered_cls);
    Py_CLEAR(a->slow);
    Py_CLEAR(a->on_error);
    Py_CLEAR(a->kind);
    return 0;
}

static void Acceptor_dealloc(Acceptor *a)
{
    PyObject_GC_UnTrack(a);
    Acceptor_clear(a);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static PyTypeObject AcceptorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringleader.runtime._loopcore.Acceptor",
    .tp_basicsize = sizeof(Acceptor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A listener's accept handler: each accepted fd becomes a transport in C.",
    .tp_vectorcall_offset = offsetof(Acceptor, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_traverse = (traverseproc)Acceptor_traverse,
    .tp_clear = (inquiry)Acceptor_clear,
    .tp_dealloc = (destructor)Acceptor_dealloc,
    .tp_init = (initproc)Acceptor_init,
    .tp_new = PyType_GenericNew,
};
