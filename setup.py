# The compiled parts must be declared through setup(): the cffi binding of
# liburing (API mode), the event loop's compiled core (it compiles the
# binding's _helpers.c in as well, so SQEs are filled by one source) and the
# Postgres driver's DataRow splitter.  Everything
# else lives in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["uring/_build.py:ffibuilder"],
    ext_modules=[Extension("ringleader.runtime._loopcore", ["runtime/_loopcore.c"],
                           include_dirs=["uring"], libraries=["uring"],
                           depends=["uring/_helpers.c", "runtime/loopcore/stream.c",
                                    "runtime/loopcore/watch.c", "runtime/loopcore/dispatch.c",
                                    "runtime/loopcore/sched.c"],
                           extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"]),
                 Extension("ringleader.drivers.postgres._pgwire",
                           ["drivers/postgres/_pgwire.c"],
                           extra_compile_args=["-O2"])],
)
