/* Watch: add_reader/add_writer as a one-shot poll re-armed after its callback.
 * Part of _loopcore.c's single translation unit (included there, not compiled alone). */

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
