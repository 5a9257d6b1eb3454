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
    if (!PyObject_TypeCheck(h, c->timer_type)) {
        PyErr_SetString(PyExc_TypeError, "not a TimerHandle");
        return NULL;
    }
    if (SLOT(h, c->off_scheduled) == Py_True)
        c->timer_cancelled++;
    Py_RETURN_NONE;
}
