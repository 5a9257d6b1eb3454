/* Core: one iteration of the loop (prune timers, flush, enter, dispatch, due
 * timers, ready handles) and the loop's clock.
 * Part of _loopcore.c's single translation unit (included there, not compiled alone;
 * after sched.c and timers.c). */

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
