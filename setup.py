# The compiled parts must be declared through setup(): the cffi binding of
# liburing (API mode) and the Postgres driver's DataRow splitter.  Everything
# else lives in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["uring/_build.py:ffibuilder"],
    ext_modules=[Extension("ringleader.drivers.postgres._pgwire",
                           ["drivers/postgres/_pgwire.c"],
                           extra_compile_args=["-O2"])],
)
