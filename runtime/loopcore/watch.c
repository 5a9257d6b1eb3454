/* Watch: add_reader/add_writer as a one-shot poll re-armed after its callback,
 * and the loop's add_reader/add_writer/remove_reader/remove_writer themselves.
 * Part of _loopcore.c's single translation unit (included there, not compiled alone;
 * after stream.c, whose core_forget_ud it uses, and sched.c, whose SLOT and make_handle). */

/* ------------------------------------------------------------- Watch */
/* One add_reader/add_writer registration: a one-shot poll on an ordinary fd,
 * re-armed after each callback (asyncio's level-triggered semantics).  The
 * dispatcher recognises a Watch in the handler table and, when its poll
 * fires while it is still the fd's registration, queues the callback's
 * handle followed by a handle that re-arms the Watch: armed only after the
 * callback ran, the poll fires again only if the callback left the fd ready
 * (no spurious wake-up epoll would not give).
 *
 * The per-wait path (psycopg's AsyncConnection waits with add_reader +
 * remove_reader around every query) is all C: Core.add_reader & co. are
 * bound on the loop in place of the mixin's methods (loop.py), build the
 * callback's asyncio.Handle, register and arm; remove cancels that handle
 * and queues a POLL_REMOVE SQE.  What needs asyncio's checks in full -- an
 * fd object that is not an int, an fd a transport of this loop may own,
 * debug mode -- goes to the mixin's Python (runtime/fdops.py), which then
 * registers through Core.watch/Core.unwatch, the same C.
 *
 * No reference cycle per registration: the re-arm handle is made per firing
 * (its callback is the core's rearm method, its argument the Watch), so a
 * removed Watch is freed at once, not by the garbage collector. */

/* Watches' user_data: a range of their own, below the MSG_RING tags and far
 * above the loop's Python-allocated ones (which count up from 256). */
#define WATCH_UD_BASE (1ull << 55)

typedef struct {
    PyObject_HEAD
    Core *core;
    PyObject *table;     /* loop._readers or loop._writers: fd -> Watch */
    PyObject *fd;        /* the key in table */
    PyObject *handle;    /* asyncio.Handle of the user's callback */
    unsigned long long ud;
    unsigned mask;
    int ifd;
    char armed;          /* our poll is in the kernel (its CQE not seen yet) */
} Watch;

static int watch_current(Watch *w)
{
    PyObject *cur = PyDict_GetItemWithError(w->table, w->fd);
    return cur == (PyObject *)w;
}

static int watch_arm(Watch *w)
{
    int res;
    if (w->armed)
        return 0;
    if (!ring_live(w->core))
        return -1;
    res = rl_prep_poll(w->core->r, w->ifd, w->mask, 0, w->ud, 0);
    if (res) {
        errno = -res;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    w->armed = 1;
    return 0;
}

static int ready_append(Core *c, PyObject *h)
{
    PyObject *r = PyObject_CallOneArg(c->ready_append, h);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int watch_fired(PyObject *wo, int res)
{
    Watch *w = (Watch *)wo;
    Core *c = w->core;
    PyObject *a[2], *rearm;
    int cur, rc;
    w->armed = 0;
    cur = watch_current(w);
    if (cur < 0)
        return -1;
    if (!cur || res < 0)
        return 0;  /* removed, or the fd was closed while watched (-EBADF): stop quietly */
    if (ready_append(c, w->handle) < 0)
        return -1;
    a[0] = c->watch_rearm;
    a[1] = (PyObject *)w;
    rearm = make_handle(c, c->handle_type, a, 2, c->watch_context);
    if (rearm == NULL)
        return -1;
    rc = ready_append(c, rearm);
    Py_DECREF(rearm);
    return rc;
}

/* Handle.cancel() of an asyncio.Handle outside debug mode, without its frame. */
static int cancel_handle(Core *c, PyObject *h)
{
    PyObject *r;
    if (!c->debug && (Py_IS_TYPE(h, c->handle_type) || Py_IS_TYPE(h, c->timer_type))) {
        if (SLOT(h, c->off_cancelled) != Py_True) {
            Py_INCREF(Py_True);
            Py_XSETREF(SLOT(h, c->off_cancelled), Py_True);
            Py_INCREF(Py_None);
            Py_XSETREF(SLOT(h, c->off_callback), Py_None);
            Py_INCREF(Py_None);
            Py_XSETREF(SLOT(h, c->off_args), Py_None);
        }
        return 0;
    }
    r = PyObject_CallMethod(h, "cancel", NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Register handle for fd in table (asyncio's _add_reader/_add_writer after
 * its checks): a Watch already there takes the new handle (the old one is
 * cancelled, as asyncio does); else a new Watch is made and armed. */
static int watch_register(Core *c, PyObject *table, PyObject *fd, int ifd, unsigned mask,
                          PyObject *handle)
{
    Watch *w;
    PyObject *key, *old;
    int rc;
    w = (Watch *)PyDict_GetItemWithError(table, fd);
    if (w != NULL) {
        if (!Py_IS_TYPE(w, &WatchType)) {
            PyErr_SetString(PyExc_RuntimeError, "the loop's fd table holds a foreign object");
            return -1;
        }
        old = w->handle;
        Py_INCREF(handle);
        w->handle = handle;
        rc = cancel_handle(c, old);
        Py_DECREF(old);
        return rc;
    }
    if (PyErr_Occurred())
        return -1;
    if (!ring_live(c))
        return -1;
    w = PyObject_GC_New(Watch, &WatchType);
    if (w == NULL)
        return -1;
    Py_INCREF(c); w->core = c;
    Py_INCREF(table); w->table = table;
    Py_INCREF(fd); w->fd = fd;
    Py_INCREF(handle); w->handle = handle;
    w->ud = WATCH_UD_BASE + c->watch_seq++;
    w->mask = mask;
    w->ifd = ifd;
    w->armed = 0;
    PyObject_GC_Track(w);
    key = PyLong_FromUnsignedLongLong(w->ud);
    rc = key == NULL ? -1 : PyDict_SetItem(c->handlers, key, (PyObject *)w);
    Py_XDECREF(key);
    if (rc == 0 && (rc = PyDict_SetItem(table, fd, (PyObject *)w)) < 0)
        core_forget_ud(c, w->ud);
    if (rc == 0 && (rc = watch_arm(w)) < 0) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        if (core_forget_ud(c, w->ud) < 0 || PyDict_DelItem(table, fd) < 0)
            PyErr_Clear();
        PyErr_Restore(t, v, tb);
    }
    Py_DECREF(w);
    return rc;
}

/* Drop fd's registration from table: 1 if there was one, 0 if not. */
static int watch_unregister(Core *c, PyObject *table, PyObject *fd)
{
    Watch *w = (Watch *)PyDict_GetItemWithError(table, fd);
    int rc = 0;
    if (w == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!Py_IS_TYPE(w, &WatchType)) {
        PyErr_SetString(PyExc_RuntimeError, "the loop's fd table holds a foreign object");
        return -1;
    }
    Py_INCREF(w);
    if (PyDict_DelItem(table, fd) < 0)
        rc = -1;
    if (rc == 0)
        rc = cancel_handle(c, w->handle);
    if (rc == 0 && w->armed && ring_live(c)) {
        int res = rl_prep_poll_remove(c->r, w->ud, 0, 0);  /* its own CQE: UD_IGNORE (0) */
        if (res) {
            errno = -res;
            PyErr_SetFromErrno(PyExc_OSError);
            rc = -1;
        }
        w->armed = 0;
    }
    if (rc == 0)
        rc = core_forget_ud(c, w->ud);
    Py_DECREF(w);
    return rc < 0 ? -1 : 1;
}

/* ------------------------------------------------- the Core's side */

/* set_fd_watch(readers, writers, stream_fds, transports, slow): the loop's
 * tables, the dicts whose keys are fds a transport may own (the fast path
 * leaves those to the Python checks), and the loop's Python fallbacks
 * (slow: a tuple of bound add_reader, add_writer, remove_reader,
 * remove_writer taking fd and the rest). */
static PyObject *Core_set_fd_watch(Core *c, PyObject *args)
{
    PyObject *rd, *wr, *sf, *tr, *slow, *rearm, *ctx;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!", &PyDict_Type, &rd, &PyDict_Type, &wr, &PyDict_Type,
                          &sf, &PyDict_Type, &tr, &PyTuple_Type, &slow))
        return NULL;
    if (PyTuple_GET_SIZE(slow) != 4) {
        PyErr_SetString(PyExc_TypeError, "set_fd_watch: slow is a 4-tuple");
        return NULL;
    }
    if ((rearm = PyObject_GetAttrString((PyObject *)c, "rearm")) == NULL)
        return NULL;
    if ((ctx = PyContext_New()) == NULL) {
        Py_DECREF(rearm);
        return NULL;
    }
    Py_XSETREF(c->watch_rearm, rearm);
    Py_XSETREF(c->watch_context, ctx);
    Py_INCREF(rd); Py_XSETREF(c->readers, rd);
    Py_INCREF(wr); Py_XSETREF(c->writers, wr);
    Py_INCREF(sf); Py_XSETREF(c->stream_fds, sf);
    Py_INCREF(tr); Py_XSETREF(c->transports, tr);
    Py_INCREF(slow); Py_XSETREF(c->watch_slow, slow);
    return Py_NewRef(Py_None);
}

/* fd is a plain non-negative int that no transport of this loop may own and
 * the loop is open, outside debug mode: the C path may take it. */
static int watch_fast(Core *c, PyObject *fd, int *ifd)
{
    long v;
    int r;
    if (c->debug || c->closed || c->readers == NULL || !PyLong_CheckExact(fd))
        return 0;
    v = PyLong_AsLong(fd);
    if (v < 0 || v > INT_MAX) {
        PyErr_Clear();
        return 0;
    }
    if ((r = PyDict_Contains(c->stream_fds, fd)) != 0)
        return r < 0 ? -1 : 0;
    if ((r = PyDict_Contains(c->transports, fd)) != 0)
        return r < 0 ? -1 : 0;
    *ifd = (int)v;
    return 1;
}

static PyObject *watch_slow(Core *c, int which, PyObject *const *args, Py_ssize_t nargs)
{
    if (c->watch_slow == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "add_reader before set_fd_watch");
        return NULL;
    }
    return PyObject_Vectorcall(PyTuple_GET_ITEM(c->watch_slow, which), args, nargs, NULL);
}

static PyObject *add_common(Core *c, int which, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *h;
    int ifd, fast;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, which ? "add_writer(fd, callback, *args)"
                                               : "add_reader(fd, callback, *args)");
        return NULL;
    }
    fast = watch_fast(c, args[0], &ifd);
    if (fast < 0)
        return NULL;
    if (!fast)
        return watch_slow(c, which, args, nargs);
    h = make_handle(c, c->handle_type, args + 1, nargs - 1, Py_None);
    if (h == NULL)
        return NULL;
    if (watch_register(c, which ? c->writers : c->readers, args[0], ifd,
                       which ? (POLLOUT | POLLERR | POLLHUP) : (POLLIN | POLLERR | POLLHUP),
                       h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(h);
    Py_RETURN_NONE;
}

static PyObject *remove_common(Core *c, int which, PyObject *fd)
{
    int ifd, fast = watch_fast(c, fd, &ifd), r;
    if (fast < 0)
        return NULL;
    if (!fast)
        return watch_slow(c, 2 + which, &fd, 1);
    r = watch_unregister(c, which ? c->writers : c->readers, fd);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *Core_add_reader(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    return add_common(c, 0, args, nargs);
}

static PyObject *Core_add_writer(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    return add_common(c, 1, args, nargs);
}

static PyObject *Core_remove_reader(Core *c, PyObject *fd)
{
    return remove_common(c, 0, fd);
}

static PyObject *Core_remove_writer(Core *c, PyObject *fd)
{
    return remove_common(c, 1, fd);
}

/* watch(table, fd, mask, handle): the registration after the Python checks. */
static PyObject *Core_watch(Core *c, PyObject *args)
{
    PyObject *table, *fd, *handle;
    unsigned mask;
    long v;
    if (!PyArg_ParseTuple(args, "O!O!IO", &PyDict_Type, &table, &PyLong_Type, &fd, &mask, &handle))
        return NULL;
    v = PyLong_AsLong(fd);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (v < 0 || v > INT_MAX)
        return PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", v);
    if (watch_register(c, table, fd, (int)v, mask, handle) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* unwatch(table, fd) -> bool: the removal after the Python checks. */
static PyObject *Core_unwatch(Core *c, PyObject *args)
{
    PyObject *table, *fd;
    int r;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &table, &fd))
        return NULL;
    r = watch_unregister(c, table, fd);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

/* rearm(watch): the handle queued after a firing's callback: arm the poll
 * again if the Watch is still its fd's registration. */
static PyObject *Core_rearm(Core *c, PyObject *arg)
{
    Watch *w = (Watch *)arg;
    int cur;
    if (!Py_IS_TYPE(arg, &WatchType)) {
        PyErr_SetString(PyExc_TypeError, "rearm(watch)");
        return NULL;
    }
    cur = watch_current(w);
    if (cur < 0)
        return NULL;
    if (cur && watch_arm(w) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int Watch_traverse(Watch *w, visitproc visit, void *arg)
{
    Py_VISIT(w->core);
    Py_VISIT(w->table);
    Py_VISIT(w->fd);
    Py_VISIT(w->handle);
    return 0;
}

static int Watch_clear(Watch *w)
{
    Py_CLEAR(w->core);
    Py_CLEAR(w->table);
    Py_CLEAR(w->fd);
    Py_CLEAR(w->handle);
    return 0;
}

static void Watch_dealloc(Watch *w)
{
    PyObject_GC_UnTrack(w);
    Watch_clear(w);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMemberDef Watch_members[] = {
    {"handle", T_OBJECT, offsetof(Watch, handle), READONLY, "the callback's asyncio.Handle"},
    {"ud", T_ULONGLONG, offsetof(Watch, ud), READONLY, NULL},
    {"fd", T_OBJECT, offsetof(Watch, fd), READONLY, NULL},
    {"armed", T_BOOL, offsetof(Watch, armed), READONLY, "its poll is in the kernel"},
    {NULL}
};

static PyTypeObject WatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringleader.runtime._loopcore.Watch",
    .tp_basicsize = sizeof(Watch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An add_reader/add_writer registration (one-shot poll, re-armed after the callback); "
              "made by Core.add_reader & co.",
    .tp_traverse = (traverseproc)Watch_traverse,
    .tp_clear = (inquiry)Watch_clear,
    .tp_dealloc = (destructor)Watch_dealloc,
    .tp_members = Watch_members,
};
