/* Core: asyncio's ready queue, timer heap, futures and the iteration (run_once).
 * Part of _loopcore.c's single translation unit (included there, not compiled alone). */

/* ---------------------------------------------------- ready queue */

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static Py_ssize_t slot_offset(PyTypeObject *t, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)t, name);
    Py_ssize_t off = -1;
    if (d == NULL)
        return -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX)
        off = ((PyMemberDescrObject *)d)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", t->tp_name, name);
    Py_DECREF(d);
    return off;
}

/* set_scheduling(loop, ready, scheduled, Handle, TimerHandle, slow_call_soon,
 *                handle_failed, clock_resolution, debug, loop_time) */
static PyObject *Core_set_scheduling(Core *c, PyObject *args)
{
    PyObject *loop, *ready, *sched, *ht, *tt, *slow, *failed, *append, *popleft, *disp, *lt;
    double res;
    int debug;
    if (!PyArg_ParseTuple(args, "OOO!O!O!OOdpO", &loop, &ready, &PyList_Type, &sched, &PyType_Type,
                          &ht, &PyType_Type, &tt, &slow, &failed, &res, &debug, &lt))
        return NULL;
    if (lt == Py_None) {
        Py_CLEAR(c->loop_time);
    } else {
        Py_INCREF(lt);
        Py_XSETREF(c->loop_time, lt);
    }
    if (!PyType_IsSubtype((PyTypeObject *)tt, (PyTypeObject *)ht)) {
        PyErr_SetString(PyExc_TypeError, "TimerHandle must derive from Handle");
        return NULL;
    }
#define OFF(field, name) if ((c->field = slot_offset((PyTypeObject *)ht, name)) < 0) return NULL
    OFF(off_callback, "_callback");
    OFF(off_args, "_args");
    OFF(off_cancelled, "_cancelled");
    OFF(off_loop, "_loop");
    OFF(off_tb, "_source_traceback");
    OFF(off_repr, "_repr");
    OFF(off_context, "_context");
#undef OFF
    if ((c->off_when = slot_offset((PyTypeObject *)tt, "_when")) < 0 ||
        (c->off_scheduled = slot_offset((PyTypeObject *)tt, "_scheduled")) < 0)
        return NULL;
    if ((disp = PyObject_GetAttrString((PyObject *)c, "dispatch")) == NULL)
        return NULL;
    Py_XSETREF(c->dispatch, disp);
    Py_INCREF(sched); Py_XSETREF(c->scheduled, sched);
    c->clock_resolution = res;
    if ((append = PyObject_GetAttrString(ready, "append")) == NULL)
        return NULL;
    if ((popleft = PyObject_GetAttrString(ready, "popleft")) == NULL) {
        Py_DECREF(append);
        return NULL;
    }
    Py_INCREF(loop); Py_XSETREF(c->loop, loop);
    Py_INCREF(ready); Py_XSETREF(c->ready, ready);
    Py_XSETREF(c->ready_append, append);
    Py_XSETREF(c->ready_popleft, popleft);
    Py_INCREF(ht); Py_XSETREF(c->handle_type, (PyTypeObject *)ht);
    Py_INCREF(tt); Py_XSETREF(c->timer_type, (PyTypeObject *)tt);
    Py_INCREF(slow); Py_XSETREF(c->slow_call_soon, slow);
    Py_INCREF(failed); Py_XSETREF(c->handle_failed, failed);
    c->debug = debug;
    Py_RETURN_NONE;
}

/* A new asyncio.Handle (or TimerHandle: type) as Handle.__init__ makes it
 * outside debug mode, for the call args[0](*args[1:nargs]); context None
 * means a copy of the current context. */
static PyObject *make_handle(Core *c, PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *context)
{
    PyObject *h, *cbargs;
    Py_ssize_t i;
    cbargs = PyTuple_New(nargs - 1);
    if (cbargs == NULL)
        return NULL;
    for (i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(cbargs, i - 1, args[i]);
    }
    if (context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            Py_DECREF(cbargs);
            return NULL;
        }
    } else {
        Py_INCREF(context);
    }
    h = type->tp_alloc(type, 0);
    if (h == NULL) {
        Py_DECREF(context);
        Py_DECREF(cbargs);
        return NULL;
    }
    Py_INCREF(args[0]);
    SLOT(h, c->off_callback) = args[0];
    SLOT(h, c->off_args) = cbargs;
    Py_INCREF(Py_False);
    SLOT(h, c->off_cancelled) = Py_False;
    Py_INCREF(c->loop);
    SLOT(h, c->off_loop) = c->loop;
    Py_INCREF(Py_None);
    SLOT(h, c->off_tb) = Py_None;
    Py_INCREF(Py_None);
    SLOT(h, c->off_repr) = Py_None;
    SLOT(h, c->off_context) = context;
    return h;
}

/* loop.call_soon(callback, *args, context=None): asyncio's, with the Handle
 * built here (asyncio.Handle itself, its slots filled directly: the same
 * object Handle.__init__ makes outside debug mode) and appended to _ready.
 * Debug mode takes asyncio's own path (thread and callback checks, source
 * tracebacks). */
static PyObject *Core_call_soon(Core *c, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *h, *r;
    if (c->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call_soon before set_scheduling");
        return NULL;
    }
    if (c->debug || nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(
            PyTuple_GET_ITEM(kwnames, 0), "context")))
        return PyObject_Vectorcall(c->slow_call_soon, args, nargsf, kwnames);
    if (c->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_soon() missing the callback argument");
        return NULL;
    }
    h = make_handle(c, c->handle_type, args, nargs, nkw == 1 ? args[nargs] : Py_None);
    if (h == NULL)
        return NULL;
    r = PyObject_CallOneArg(c->ready_append, h);
    if (r == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(r);
    return h;
}

/* Run one asyncio.Handle (or TimerHandle) as Handle._run does. */
static int run_handle(Core *c, PyObject *h)
{
    PyObject *ctx = SLOT(h, c->off_context), *cb = SLOT(h, c->off_callback);
    PyObject *cbargs = SLOT(h, c->off_args), *r;
    if (ctx == NULL || cb == NULL || cbargs == NULL || !PyTuple_Check(cbargs)) {
        /* not a Handle we built or recognise: let it run itself */
        r = PyObject_CallMethod(h, "_run", NULL);
    } else {
        Py_INCREF(ctx);
        Py_INCREF(cb);
        Py_INCREF(cbargs);
        if (PyContext_Enter(ctx) < 0) {
            r = NULL;
        } else {
            r = PyObject_Call(cb, cbargs, NULL);
            if (PyContext_Exit(ctx) < 0)
                Py_CLEAR(r);
        }
        Py_DECREF(ctx);
        Py_DECREF(cb);
        Py_DECREF(cbargs);
        if (r == NULL) {
            PyObject *exc, *rr;
            if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
                PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
                return -1;
            exc = PyErr_GetRaisedException_compat();
            rr = PyObject_CallFunctionObjArgs(c->handle_failed, h, exc, NULL);
            Py_DECREF(exc);
            if (rr == NULL)
                return -1;
            Py_DECREF(rr);
            return 0;
        }
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* run_ready(n): pop and run the first n handles of the ready queue (the
 * iteration's share; callbacks they schedule wait for the next iteration). */
static PyObject *Core_run_ready(Core *c, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg), i;
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (c->ready_popleft == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "run_ready before set_scheduling");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *h = PyObject_CallNoArgs(c->ready_popleft);
        int rc;
        if (h == NULL)
            return NULL;
        if (Py_IS_TYPE(h, c->handle_type) || Py_IS_TYPE(h, c->timer_type)) {
            if (SLOT(h, c->off_cancelled) == Py_True) {
                Py_DECREF(h);
                continue;
            }
            rc = run_handle(c, h);
        } else {
            PyObject *cancelled = PyObject_GetAttrString(h, "_cancelled");
            int yes = cancelled ? PyObject_IsTrue(cancelled) : -1;
            Py_XDECREF(cancelled);
            if (yes < 0) {
                Py_DECREF(h);
                return NULL;
            }
            if (yes) {
                Py_DECREF(h);
                continue;
            }
            PyObject *r = PyObject_CallMethod(h, "_run", NULL);
            rc = r ? 0 : -1;
            Py_XDECREF(r);
        }
        Py_DECREF(h);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------- futures, debug */

static PyObject *s_loop_kwnames;

/* create_future(): asyncio.Future(loop=loop), as BaseEventLoop.create_future */
static PyObject *Core_create_future(Core *c, PyObject *unused)
{
    if (c->future_type == NULL || c->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "create_future before set_future_type");
        return NULL;
    }
    return PyObject_Vectorcall(c->future_type, &c->loop, 0, s_loop_kwnames);
}

/* set_future_types(Future, Task) */
static PyObject *Core_set_future_types(Core *c, PyObject *args)
{
    PyObject *f, *t;
    if (!PyArg_ParseTuple(args, "OO", &f, &t))
        return NULL;
    Py_INCREF(f);
    Py_XSETREF(c->future_type, f);
    Py_INCREF(t);
    Py_XSETREF(c->task_type, t);
    Py_RETURN_NONE;
}

static PyObject *s_task_kwnames, *s_task_factory, *s_slow_create_task;

/* create_task(coro, *, name=None, context=None): BaseEventLoop.create_task
 * without a task factory and outside debug mode (else asyncio's method). */
static PyObject *Core_create_task(Core *c, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, i;
    PyObject *call[4], *tf, *name = Py_None, *context = Py_None;
    int slow = c->debug || nargs != 1 || c->task_type == NULL;
    for (i = 0; i < nkw && !slow; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (!PyUnicode_CompareWithASCIIString(k, "name"))
            name = args[nargs + i];
        else if (!PyUnicode_CompareWithASCIIString(k, "context"))
            context = args[nargs + i];
        else
            slow = 1;
    }
    if (!slow) {
        if (c->closed) {
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
            return NULL;
        }
        tf = PyObject_GetAttr(c->loop, s_task_factory);
        if (tf == NULL)
            return NULL;
        slow = tf != Py_None;
        Py_DECREF(tf);
    }
    if (slow) {
        PyObject *meth = PyObject_GetAttr(c->loop, s_slow_create_task), *r;
        if (meth == NULL)
            return NULL;
        r = PyObject_Vectorcall(meth, args, nargsf, kwnames);
        Py_DECREF(meth);
        return r;
    }
    call[0] = args[0];
    call[1] = c->loop;
    call[2] = name;
    call[3] = context;
    return PyObject_Vectorcall(c->task_type, call, 1, s_task_kwnames);
}

/* new_handle(callback, *args) -> asyncio.Handle, not scheduled */
static PyObject *Core_new_handle(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || c->handle_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "new_handle(callback, *args) after set_scheduling");
        return NULL;
    }
    return make_handle(c, c->handle_type, args, nargs, Py_None);
}

static PyObject *Core_get_debug(Core *c, PyObject *unused)
{
    return PyBool_FromLong(c->debug);
}

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

/* ------------------------------------------------------- iteration */

/* The loop's clock: CLOCK_MONOTONIC (asyncio's time.monotonic), or the
 * time() of a subclass that brings its own clock. */
static int loop_now(Core *c, double *out)
{
    PyObject *t;
    if (c->loop_time == NULL) {
        *out = mono_now();
        return 0;
    }
    t = PyObject_CallNoArgs(c->loop_time);
    if (t == NULL)
        return -1;
    *out = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int is_cancelled(Core *c, PyObject *h)
{
    return SLOT(h, c->off_cancelled) == Py_True;
}

static void set_scheduled(Core *c, PyObject *h, PyObject *v)
{
    PyObject *old = SLOT(h, c->off_scheduled);
    Py_INCREF(v);
    SLOT(h, c->off_scheduled) = v;
    Py_XDECREF(old);
}

/* Drop cancelled timers: all of them when they are most of a big heap,
 * else those at the top (asyncio's _run_once rule). */
static int prune_timers(Core *c)
{
    PyObject *sched = c->scheduled;
    Py_ssize_t n = PyList_GET_SIZE(sched);
    if (n > 100 && (double)c->timer_cancelled / (double)n > 0.5) {
        Py_ssize_t i, k = 0;
        PyObject **a = ((PyListObject *)sched)->ob_item;
        for (i = 0; i < n; i++) {
            if (is_cancelled(c, a[i])) {
                set_scheduled(c, a[i], Py_False);
                Py_DECREF(a[i]);
            } else {
                a[k++] = a[i];
            }
        }
        Py_SET_SIZE(sched, k);
        for (i = k / 2 - 1; i >= 0; i--)
            heap_siftup(c, a, k, i);
        c->timer_cancelled = 0;
        return 0;
    }
    while (PyList_GET_SIZE(sched) && is_cancelled(c, PyList_GET_ITEM(sched, 0))) {
        PyObject *h = heap_pop(c, sched);
        if (h == NULL)
            return -1;
        c->timer_cancelled--;
        set_scheduled(c, h, Py_False);
        Py_DECREF(h);
    }
    return 0;
}

/* The wait and harvest of one iteration; timeout < 0: no deadline. */
static int poll_once(Core *c, double timeout)
{
    PyObject *r;
    int ret;
    Py_ssize_t nready;
    if (PyList_GET_SIZE(c->dirty)) {
        r = Core_flush_dirty(c, NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if (!ring_live(c))
        return -1;
    if (timeout != 0.0) {
        /* Publish "asleep" before the final look at the ready queue: a thread
         * that appends to it and then sees sleeping 0 is guaranteed we see its
         * handle here (the GIL orders both steps). */
        c->sleeping = 1;
        nready = PyObject_Size(c->ready);
        if (nready < 0) {
            c->sleeping = 0;
            return -1;
        }
        if (nready) {
            c->sleeping = 0;
            ret = rl_submit_wait(c->r, 0, 0);
        } else {
            int64_t ns = timeout < 0 ? -1 : (int64_t)(timeout * 1e9);
            Py_BEGIN_ALLOW_THREADS
            ret = rl_submit_wait(c->r, 1, ns);
            Py_END_ALLOW_THREADS
            c->sleeping = 0;
        }
    } else {
        ret = rl_submit_wait(c->r, 0, 0);
    }
    c->now = mono_now();
    if (ret < 0) {
        errno = -ret;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (io_uring_cq_has_overflow(&c->r->ring))
        c->r->st.cq_backlog++;
    if (!io_uring_cq_ready(&c->r->ring))
        return 0;
    nready = PyObject_Size(c->ready);
    if (nready < 0)
        return -1;
    if (nready) {
        /* asyncio runs the callbacks that were ready before a poll ahead of
         * that poll's I/O callbacks (e.g. the task awaiting create_connection
         * resumes before data_received): dispatch after them, in order.  The
         * completions wait in the CQ until then. */
        PyObject *h = make_handle(c, c->handle_type, &c->dispatch, 1, Py_None);
        if (h == NULL)
            return -1;
        r = PyObject_CallOneArg(c->ready_append, h);
        Py_DECREF(h);
    } else {
        r = Core_dispatch(c, NULL);
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* run_once(stopping) -> handles due: asyncio's _run_once up to (not
 * including) running the ready handles: prune timers, wait for I/O or the
 * first timer, dispatch completions, move due timers to the ready queue.
 * With run=True it also runs them (outside debug mode). */
static PyObject *Core_run_once(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *sched = c->scheduled;
    double timeout, now, end;
    Py_ssize_t ntodo;
    int stopping, run;
    if (nargs != 2 || sched == NULL) {
        PyErr_SetString(PyExc_TypeError, "run_once(stopping, run) after set_scheduling");
        return NULL;
    }
    stopping = PyObject_IsTrue(args[0]);
    run = PyObject_IsTrue(args[1]);
    if (stopping < 0 || run < 0)
        return NULL;
    if (prune_timers(c) < 0)
        return NULL;
    ntodo = PyObject_Size(c->ready);
    if (ntodo < 0)
        return NULL;
    if (ntodo || stopping) {
        timeout = 0.0;
    } else if (PyList_GET_SIZE(sched)) {
        if (loop_now(c, &now) < 0)
            return NULL;
        timeout = when_of(c, PyList_GET_ITEM(sched, 0)) - now;
        if (timeout < 0)
            timeout = 0.0;
        if (timeout > 24 * 3600.0)
            timeout = 24 * 3600.0;
    } else {
        timeout = -1.0;
    }
    if (poll_once(c, timeout) < 0)
        return NULL;
    if (loop_now(c, &now) < 0)
        return NULL;
    end = now + c->clock_resolution;
    while (PyList_GET_SIZE(sched)) {
        PyObject *h = PyList_GET_ITEM(sched, 0), *r;
        double w = when_of(c, h);
        if (w >= end)
            break;
        h = heap_pop(c, sched);
        if (h == NULL)
            return NULL;
        set_scheduled(c, h, Py_False);
        if (c->telemetry && now - w > 0) {
            double lag = now - w;
            if (lag > c->lag_max)
                c->lag_max = lag;
            c->lag_ewma += 0.05 * (lag - c->lag_ewma);
        }
        r = PyObject_CallOneArg(c->ready_append, h);
        Py_DECREF(h);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    ntodo = PyObject_Size(c->ready);
    if (ntodo < 0)
        return NULL;
    if (c->telemetry) {
        c->iterations++;
        c->handles_run += (unsigned long long)ntodo;
    }
    if (run && !c->debug) {
        PyObject *n = PyLong_FromSsize_t(ntodo), *r;
        if (n == NULL)
            return NULL;
        r = Core_run_ready(c, n);
        Py_DECREF(n);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        return PyLong_FromLong(0);
    }
    return PyLong_FromSsize_t(ntodo);
}

static PyObject *Core_time(Core *c, PyObject *unused)
{
    return PyFloat_FromDouble(mono_now());
}

/* poll(timeout): one wait-and-harvest (timeout None: no deadline). */
static PyObject *Core_poll(Core *c, PyObject *arg)
{
    double t = -1.0;
    if (arg != Py_None) {
        t = PyFloat_AsDouble(arg);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (t < 0)
            t = 0.0;
    }
    if (poll_once(c, t) < 0)
        return NULL;
    Py_RETURN_NONE;
}
