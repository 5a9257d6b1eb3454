/* Reply matching: a stream's received bytes parsed by the protocol's reader and
 * each reply handed to the oldest waiting future, in C.
 * Part of _loopcore.c's single translation unit (included there after stream.c,
 * whose stream_deliver calls fifo_deliver; not compiled alone).
 *
 * What it is for: a pipelined request/reply protocol (Redis) whose replies
 * come back in the order the requests went out.  Its Python path is
 * data_received -> the connection's handler -> reader.feed + a loop over
 * reader.gets() -> deque.popleft() -> future.set_result(), three Python frames
 * per receive and a Python loop per reply; here the same calls are made from
 * C, so a receive of eight replies runs no Python frame at all.
 *
 * The protocol hands over, through RingTransport.match_replies (declared in
 * runtime/contract.py, ReplyMatchingTransport), a tuple
 *     (feed, gets, need_more, waiters, popleft, other, aside)
 * feed/gets: its reader's bound methods (hiredis.Reader's: feed(bytes), gets()
 * returning need_more when it has no complete reply); waiters: the deque of
 * futures the protocol appends to as it sends; popleft: waiters.popleft;
 * other(item): everything that is not a plain reply for the oldest waiter:
 * a reply whose type is aside (RESP3 pushes), a reply with no waiter, or the
 * exception the reader raised (the protocol decides: it closes the
 * connection).  A future already done (its caller gave up) gets nothing: the
 * reply is dropped, as the Python path does.
 *
 * What it does not do: parse (the reader does), keep state of its own (the
 * reader and the deque are the protocol's, shared with its Python path, so
 * either path may take over at any byte), or run when the stream is buffered
 * (a BufferedProtocol is fed by the transport). */

enum { F_FEED, F_GETS, F_MORE, F_WAITERS, F_POPLEFT, F_OTHER, F_ASIDE, F_N };

static PyObject *s_done, *s_set_result;

static int fifo_check(PyObject *fifo)
{
    if (fifo == Py_None)
        return 0;
    if (!PyTuple_CheckExact(fifo) || PyTuple_GET_SIZE(fifo) != F_N) {
        PyErr_SetString(PyExc_TypeError, "set_fifo((feed, gets, need_more, waiters, popleft, "
                                         "other, aside)) or set_fifo(None)");
        return -1;
    }
    if (!PyCallable_Check(PyTuple_GET_ITEM(fifo, F_FEED)) ||
        !PyCallable_Check(PyTuple_GET_ITEM(fifo, F_GETS)) ||
        !PyCallable_Check(PyTuple_GET_ITEM(fifo, F_POPLEFT)) ||
        !PyCallable_Check(PyTuple_GET_ITEM(fifo, F_OTHER))) {
        PyErr_SetString(PyExc_TypeError, "set_fifo: feed, gets, popleft and other must be callable");
        return -1;
    }
    if (PyTuple_GET_ITEM(fifo, F_ASIDE) != Py_None && !PyType_Check(PyTuple_GET_ITEM(fifo, F_ASIDE))) {
        PyErr_SetString(PyExc_TypeError, "set_fifo: aside must be a type or None");
        return -1;
    }
    return 0;
}

/* other(item) inside the transport's context; 0 or -1 with the exception set. */
static int fifo_other(Stream *s, PyObject *fifo, PyObject *item)
{
    PyObject *r = call_in_context(s->context, PyTuple_GET_ITEM(fifo, F_OTHER), item);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Resolve the oldest waiter with reply (dropped if that caller gave up). */
static int fifo_resolve(PyObject *fifo, PyObject *reply)
{
    PyObject *fut = PyObject_CallNoArgs(PyTuple_GET_ITEM(fifo, F_POPLEFT)), *r;
    PyObject *args[2];
    if (fut == NULL)
        return -1;
    args[0] = fut;
    r = PyObject_VectorcallMethod(s_done, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) {
        Py_DECREF(fut);
        return -1;
    }
    if (r == Py_False) {
        Py_DECREF(r);
        args[1] = reply;
        r = PyObject_VectorcallMethod(s_set_result, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL) {
            Py_DECREF(fut);
            return -1;
        }
    }
    Py_DECREF(r);
    Py_DECREF(fut);
    return 0;
}

/* The receive path of a stream with a fifo: feed, then every complete reply to
 * its waiter.  Returns 0, or -1 with an exception set (the caller reports it
 * as a data_received failure would be).  Stops when other() (or anything it
 * triggers) takes the fifo away: the connection was closed, or went back to
 * its Python path, which goes on from the reader's state. */
static int fifo_deliver(Stream *s, PyObject *data)
{
    PyObject *fifo = s->fifo, *r;
    int rc = 0;
    Py_INCREF(fifo);
    r = PyObject_CallOneArg(PyTuple_GET_ITEM(fifo, F_FEED), data);
    if (r == NULL)
        goto reader_failed;
    Py_DECREF(r);
    while (s->fifo == fifo) {
        PyObject *reply = PyObject_CallNoArgs(PyTuple_GET_ITEM(fifo, F_GETS));
        PyObject *aside = PyTuple_GET_ITEM(fifo, F_ASIDE);
        Py_ssize_t n;
        if (reply == NULL)
            goto reader_failed;
        if (reply == PyTuple_GET_ITEM(fifo, F_MORE)) {
            Py_DECREF(reply);
            break;
        }
        n = PyObject_Length(PyTuple_GET_ITEM(fifo, F_WAITERS));
        if (n < 0)
            rc = -1;
        else if (n == 0 || (aside != Py_None && Py_TYPE(reply) == (PyTypeObject *)aside))
            rc = fifo_other(s, fifo, reply);
        else
            rc = fifo_resolve(fifo, reply);
        Py_DECREF(reply);
        if (rc < 0)
            break;
    }
    Py_DECREF(fifo);
    return rc;

reader_failed:
    /* The reader refused the bytes (a malformed stream): the protocol decides. */
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        Py_DECREF(fifo);
        return -1;
    }
    {
        PyObject *exc = PyErr_GetRaisedException_compat();
        rc = fifo_other(s, fifo, exc);
        Py_DECREF(exc);
    }
    Py_DECREF(fifo);
    return rc;
}

/* set_fifo(tuple | None): see the top of this file. */
static PyObject *Stream_set_fifo(Stream *s, PyObject *fifo)
{
    if (fifo_check(fifo) < 0)
        return NULL;
    if (fifo == Py_None)
        Py_CLEAR(s->fifo);
    else
        Py_XSETREF(s->fifo, Py_NewRef(fifo));
    Py_RETURN_NONE;
}
