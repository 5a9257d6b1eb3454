/* The Postgres driver's compiled hot paths: splitting consecutive DataRow
 * messages of a receive buffer into rows of column values, and turning
 * loaded values into records (make_records, below).
 *
 * A 10-row x 10-column result is 100 values; splitting them in Python costs
 * two interpreted calls per column, about a third of a FETCH's client CPU.
 * Here it is one call per batch of rows.  Semantics are exactly those of
 * MessageReader._read_rows_py in messages.py (the fuzz tests hold the two,
 * and the general parse_data_row, to the same accept/reject decisions):
 *
 *   split_rows(buf: bytes, pos: int, out: list) -> int
 *
 * appends one list per complete DataRow ('D') starting at buf[pos] (bytes per
 * value, None for NULL) and returns the offset of the first byte not consumed:
 * the first message that is not a DataRow, or an incomplete one.  A malformed
 * DataRow raises ValueError with the reason; the rows before it stay
 * appended.  It does not frame other messages, allocate buffers or keep state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static inline int32_t be32(const unsigned char *p)
{
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
                     ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

static PyObject *
split_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "split_rows(buf, pos, out) takes 3 arguments");
        return NULL;
    }
    PyObject *buf = args[0], *out = args[2];
    if (!PyBytes_Check(buf) || !PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "split_rows: buf must be bytes and out a list");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t n = PyBytes_GET_SIZE(buf);
    if (pos < 0 || pos > n) {
        PyErr_SetString(PyExc_IndexError, "split_rows: pos outside the buffer");
        return NULL;
    }
    while (pos + 7 <= n && b[pos] == 'D') {
        /* The length counts itself but not the type byte. */
        Py_ssize_t end = pos + 1 + (Py_ssize_t)be32(b + pos + 1);
        if (end > n)
            break;  /* incomplete: wait for more bytes */
        if (end < pos + 7) {
            PyErr_SetString(PyExc_ValueError, "truncated 'D' message");
            return NULL;
        }
        Py_ssize_t ncols = ((Py_ssize_t)b[pos + 5] << 8) | b[pos + 6];
        PyObject *row = PyList_New(ncols);
        if (row == NULL)
            return NULL;
        /* It only ever holds bytes and None, so it cannot be part of a cycle:
         * keep it out of the cyclic GC, which would otherwise traverse every
         * raw row of a big result again at each collection. */
        PyObject_GC_UnTrack(row);
        Py_ssize_t p = pos + 7;
        for (Py_ssize_t i = 0; i < ncols; i++) {
            if (p + 4 > end) {
                Py_DECREF(row);
                PyErr_SetString(PyExc_ValueError, "truncated 'D' message");
                return NULL;
            }
            int32_t ln = be32(b + p);
            p += 4;
            PyObject *v;
            if (ln >= 0) {
                if (p + ln > end) {
                    Py_DECREF(row);
                    PyErr_SetString(PyExc_ValueError, "truncated 'D' message");
                    return NULL;
                }
                v = PyBytes_FromStringAndSize((const char *)b + p, ln);
                if (v == NULL) {
                    Py_DECREF(row);
                    return NULL;
                }
                p += ln;
            } else if (ln == -1) {
                v = Py_NewRef(Py_None);
            } else {
                Py_DECREF(row);
                PyErr_Format(PyExc_ValueError, "negative column length %d in 'D' message",
                             (int)ln);
                return NULL;
            }
            PyList_SET_ITEM(row, i, v);
        }
        if (p < end) {
            Py_DECREF(row);
            PyErr_Format(PyExc_ValueError, "%zd trailing bytes in 'D' message", end - p);
            return NULL;
        }
        int rc = PyList_Append(out, row);
        Py_DECREF(row);
        if (rc < 0)
            return NULL;
        pos = end;
    }
    return PyLong_FromSsize_t(pos);
}

/* make_records(rows, load_sequence, record_type) -> list
 *
 * [record_type(load_sequence(row)) for row in rows], where record_type is a
 * tuple subclass without instance dict (types.record_class): built in place
 * instead of copying a tuple through the type's constructor.  A record whose
 * values are all objects the cyclic GC does not track (int, str, bytes,
 * float, None, dates, ...) cannot be part of a cycle and is untracked, as
 * CPython does for plain tuples; a big result then costs the collector
 * nothing to traverse.
 */
static PyObject *
make_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "make_records(rows, load_sequence, record_type) takes 3 arguments");
        return NULL;
    }
    PyObject *rows = args[0], *load = args[1], *rtype = args[2];
    if (!PyList_Check(rows) || !PyType_Check(rtype) ||
        !PyType_IsSubtype((PyTypeObject *)rtype, &PyTuple_Type) ||
        ((PyTypeObject *)rtype)->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "make_records: rows must be a list and record_type a slotted tuple subclass");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)rtype;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *vals = PyObject_CallOneArg(load, PyList_GET_ITEM(rows, i));
        if (vals == NULL)
            goto fail;
        if (!PyTuple_Check(vals)) {
            Py_DECREF(vals);
            PyErr_SetString(PyExc_TypeError, "make_records: load_sequence did not return a tuple");
            goto fail;
        }
        Py_ssize_t k = PyTuple_GET_SIZE(vals);
        PyObject *rec = tp->tp_alloc(tp, k);
        if (rec == NULL) {
            Py_DECREF(vals);
            goto fail;
        }
        int atomic = 1;
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *v = PyTuple_GET_ITEM(vals, j);
            if (PyObject_IS_GC(v))
                atomic = 0;
            PyTuple_SET_ITEM(rec, j, Py_NewRef(v));
        }
        Py_DECREF(vals);
        if (atomic)
            PyObject_GC_UnTrack(rec);
        PyList_SET_ITEM(out, i, rec);
    }
    return out;
fail:
    Py_DECREF(out);  /* the unfilled slots are NULL, which list_dealloc skips */
    return NULL;
}

static PyMethodDef methods[] = {
    {"split_rows", (PyCFunction)(void (*)(void))split_rows, METH_FASTCALL,
     "split_rows(buf, pos, out) -> new pos: consecutive complete DataRows of buf "
     "from pos appended to out as lists of bytes/None; ValueError if one is malformed."},
    {"make_records", (PyCFunction)(void (*)(void))make_records, METH_FASTCALL,
     "make_records(rows, load_sequence, record_type) -> [record_type(load_sequence(r)) ...]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pgwire",
    "Compiled DataRow splitting and record building for ringleader.drivers.postgres.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__pgwire(void)
{
    return PyModule_Create(&module);
}
