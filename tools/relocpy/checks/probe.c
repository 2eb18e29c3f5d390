/* A minimal extension module: proves a C extension builds against the
   relocated interpreter's own sysconfig, and imports. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
probe_answer(PyObject *self, PyObject *args)
{
    return PyLong_FromLong(42);
}

static PyMethodDef probe_methods[] = {
    {"answer", probe_answer, METH_NOARGS, "Return 42."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "relocpy_probe", NULL, -1, probe_methods,
};

PyMODINIT_FUNC
PyInit_relocpy_probe(void)
{
    return PyModule_Create(&probe_module);
}
