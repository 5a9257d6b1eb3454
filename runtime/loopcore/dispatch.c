/* Core: wait, harvest and dispatch of completions; the transports' flush.
 * Part of _loopcore.c's single translation unit (included there, not compiled alone). */

/* -------------------------------------------------------------- Core */

static int watch_fired(PyObject *w, int res);  /* watch.c */

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

#define BID_GROUP2 32768u   /* buffer ids from here are the second group's */

/* set_bufring2(addr, owner): completions whose buffer id is >= BID_GROUP2 take
 * their bytes from this group (a completion does not name its group). */
static PyObject *Core_set_bufring2(Core *c, PyObject *args)
{
    unsigned long long ba;
    PyObject *owner;
    if (!PyArg_ParseTuple(args, "KO", &ba, &owner))
        return NULL;
    if (!ba) {
        PyErr_SetString(PyExc_ValueError, "a buffer ring address is required");
        return NULL;
    }
    Py_INCREF(owner);
    Py_XSETREF(c->owner2, owner);
    c->b2 = (struct rl_bufring *)(uintptr_t)ba;
    Py_RETURN_NONE;
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
            struct rl_bufring *b = (bid >= BID_GROUP2 && c->b2 != NULL) ? c->b2 : c->b;
            if (res > 0) {
                data = PyBytes_FromStringAndSize(rl_buf_addr(b, bid), res);
                if (data == NULL)
                    return NULL;  /* the CQE stays; its buffer with it */
            }
            rl_bufring_recycle(b, bid);
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
            if (PyObject_TypeCheck(h, StreamType)) {
                Stream *s = (Stream *)h;
                if (ud == s->ud_recv)
                    rc = stream_on_recv(s, res, flags, data);
                else
                    rc = stream_on_send(s, res);
            } else if (Py_IS_TYPE(h, &WatchType)) {
                rc = watch_fired(h, res);
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
