# The compiled parts must be declared through setup(): the cffi binding of
# liburing (API mode), the event loop's compiled core (it compiles the
# binding's _helpers.c in as well, so SQEs are filled by one source) and the
# Postgres driver's DataRow splitter.  Everything
# else lives in pyproject.toml.
from setuptools import Extension, setup
from setuptools import find_packages
from setuptools.command.build_py import build_py

# Also here, because pyproject.toml cannot say them for this layout (the
# repository root IS the package `ringleader`, package-dir "ringleader" = "."):
# - the package list, computed from the folders that hold an __init__.py, so a
#   new subpackage cannot be left out of the wheel by a hand-kept list;
# - that this file is not a module of the package (without the filter the
#   wheel ships `ringleader.setup`, which runs setup() when imported).
NOT_PACKAGED = ["tests", "tests.*", "scripts", "scripts.*", "docs", "docs.*", "build", "build.*",
                "dist", "dist.*"]
NOT_MODULES = {"setup"}


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package != "ringleader":
            return modules
        return [(pkg, mod, path) for pkg, mod, path in modules if mod not in NOT_MODULES]


setup(
    cffi_modules=["uring/_build.py:ffibuilder"],
    ext_modules=[Extension("ringleader.runtime._loopcore", ["runtime/_loopcore.c"],
                           include_dirs=["uring"], libraries=["uring"],
                           depends=["uring/_helpers.c", "uring/_resources.c", "runtime/loopcore/stream.c",
                                    "runtime/loopcore/watch.c", "runtime/loopcore/dispatch.c",
                                    "runtime/loopcore/sched.c", "runtime/loopcore/timers.c",
                                    "runtime/loopcore/iterate.c", "runtime/loopcore/replies.c"],
                           extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"]),
                 Extension("ringleader.drivers.postgres._pgwire",
                           ["drivers/postgres/_pgwire.c"],
                           extra_compile_args=["-O2"])],
    packages=["ringleader", *("ringleader." + p for p in find_packages(".", exclude=NOT_PACKAGED))],
    cmdclass={"build_py": BuildPy},
)
