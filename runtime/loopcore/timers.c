/* Core: asyncio's timer heap (call_at/call_later, cancelled-timer bookkeeping).
 * Part of _loopcore.c's single translation unit (included there, not compiled alone;
 * after sched.c, whose SLOT/make_handle it uses). */

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
    if (c->off_core >= 0 && Py_IS_TYPE(h, c->timer_type)) {
        Py_INCREF(c);
        SLOT(h, c->off_core) = (PyObject *)c;
    }
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

/* TimerHandle.cancel() reports here (BaseEventLoop._timer_handle_cancelled). */
static PyObject *Core_timer_handle_cancelled(Core *c, PyObject *h)
{
    /* asyncio's own TimerHandles too (debug mode makes them) */
    if (!PyObject_TypeCheck(h, c->off_core >= 0 ? c->timer_type->tp_base : c->timer_type)) {
        PyErr_SetString(PyExc_TypeError, "not a TimerHandle");
        return NULL;
    }
    if (SLOT(h, c->off_scheduled) == Py_True)
        c->timer_cancelled++;
    Py_RETURN_NONE;
}

/* ------------------------------------------- TimerHandle.cancel in C */
/* asyncio's TimerHandle.cancel is two Python frames (TimerHandle.cancel and
 * Handle.cancel), run for every asyncio.timeout(), wait_for() and
 * call_later(...).cancel() -- per command in redis-py, asyncpg and psycopg.
 * The core's timers are of a subclass, made by timer_handle_type() below,
 * whose cancel is this C function doing exactly the same:
 *
 *     if not self._cancelled:
 *         self._loop._timer_handle_cancelled(self)   # the core's counter
 *         self._cancelled = True
 *         if self._loop.get_debug(): self._repr = repr(self)
 *         self._callback = None
 *         self._args = None
 *
 * The subclass is an asyncio.TimerHandle (isinstance holds, repr names it
 * TimerHandle) with one more slot, _core, set by the core that made it. */

static Py_ssize_t tc_off_core = -1, tc_off_cancelled, tc_off_loop, tc_off_callback, tc_off_args,
    tc_off_repr, tc_off_scheduled;
static PyObject *s_timer_handle_cancelled, *s_get_debug;

static PyObject *timer_cancel(PyObject *h, PyObject *unused)
{
    PyObject *core = SLOT(h, tc_off_core), *loop = SLOT(h, tc_off_loop), *r;
    int debug;
    if (SLOT(h, tc_off_cancelled) == Py_True)
        Py_RETURN_NONE;
    if (loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_loop");
        return NULL;
    }
    if (core != NULL && ((Core *)core)->loop == loop && ((Core *)core)->own_cancel_count) {
        if (SLOT(h, tc_off_scheduled) == Py_True)
            ((Core *)core)->timer_cancelled++;
        debug = ((Core *)core)->debug;
    } else {
        PyObject *args[2] = {loop, h};
        r = PyObject_VectorcallMethod(s_timer_handle_cancelled, args,
                                      2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        r = PyObject_CallMethodNoArgs(loop, s_get_debug);
        if (r == NULL)
            return NULL;
        debug = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (debug < 0)
            return NULL;
    }
    Py_INCREF(Py_True);
    Py_XSETREF(SLOT(h, tc_off_cancelled), Py_True);
    if (debug) {
        r = PyObject_Repr(h);
        if (r == NULL)
            return NULL;
        Py_XSETREF(SLOT(h, tc_off_repr), r);
    }
    Py_INCREF(Py_None);
    Py_XSETREF(SLOT(h, tc_off_callback), Py_None);
    Py_INCREF(Py_None);
    Py_XSETREF(SLOT(h, tc_off_args), Py_None);
    Py_RETURN_NONE;
}

static PyMethodDef timer_cancel_def = {
    "cancel", (PyCFunction)timer_cancel, METH_NOARGS,
    "Cancel the call (asyncio.TimerHandle.cancel, compiled)."};

/* timer_handle_type(asyncio.TimerHandle) -> the core's subclass (made once). */
static PyObject *timer_handle_type(PyObject *m, PyObject *base)
{
    static PyObject *made;
    PyObject *cls, *descr;
    if (made != NULL)
        return Py_NewRef(made);
    if (!PyType_Check(base)) {
        PyErr_SetString(PyExc_TypeError, "timer_handle_type(asyncio.TimerHandle)");
        return NULL;
    }
    cls = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){s:(s),s:s,s:s,s:s}",
                                "TimerHandle", base, "__slots__", "_core",
                                "__module__", "ringleader.runtime.loop",
                                "__qualname__", "TimerHandle",
                                "__doc__", "asyncio.TimerHandle with its cancel() in C "
                                           "(runtime/loopcore/timers.c)");
    if (cls == NULL)
        return NULL;
#define TOFF(var, name) if ((var = slot_offset((PyTypeObject *)cls, name)) < 0) goto fail
    TOFF(tc_off_core, "_core");
    TOFF(tc_off_cancelled, "_cancelled");
    TOFF(tc_off_loop, "_loop");
    TOFF(tc_off_callback, "_callback");
    TOFF(tc_off_args, "_args");
    TOFF(tc_off_repr, "_repr");
    TOFF(tc_off_scheduled, "_scheduled");
#undef TOFF
    if ((s_timer_handle_cancelled = PyUnicode_InternFromString("_timer_handle_cancelled")) == NULL ||
        (s_get_debug = PyUnicode_InternFromString("get_debug")) == NULL)
        goto fail;
    descr = PyDescr_NewMethod((PyTypeObject *)cls, &timer_cancel_def);
    if (descr == NULL)
        goto fail;
    if (PyObject_SetAttrString(cls, "cancel", descr) < 0) {
        Py_DECREF(descr);
        goto fail;
    }
    Py_DECREF(descr);
    made = Py_NewRef(cls);
    return cls;
fail:
    tc_off_core = -1;
    Py_DECREF(cls);
    return NULL;
}
