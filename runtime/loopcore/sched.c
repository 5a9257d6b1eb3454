/* Core: asyncio's ready queue, Handles, futures and tasks built in C.
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
    /* the core's own TimerHandle subclass (timers.c) has a _core slot; asyncio's has not */
    if ((c->off_core = slot_offset((PyTypeObject *)tt, "_core")) < 0)
        PyErr_Clear();
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
