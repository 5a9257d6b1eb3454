# What pyproject.toml cannot say about this layout (the repository root IS the
# package `ringleader`, mapped by package-dir "ringleader" = "."):
# - the compiled parts: the cffi binding of liburing (API mode) and the
#   Postgres driver's DataRow splitter;
# - the package list, computed from the folders that hold an __init__.py, so a
#   new subpackage cannot be left out of the wheel by a hand-kept list;
# - that this file itself is not a module of the package (without the filter
#   the wheel ships `ringleader.setup`, which runs setup() when imported).
# Everything else lives in pyproject.toml.
from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

# Folders of the repository that are not part of the installed package.
NOT_PACKAGED = ["tests", "tests.*", "scripts", "scripts.*", "docs", "docs.*", "build", "build.*",
                "dist", "dist.*"]
# Top-level files of the repository that are not modules of the package.
NOT_MODULES = {"setup"}


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package != "ringleader":
            return modules
        return [(pkg, mod, path) for pkg, mod, path in modules if mod not in NOT_MODULES]


setup(
    packages=["ringleader", *("ringleader." + p for p in find_packages(".", exclude=NOT_PACKAGED))],
    cmdclass={"build_py": BuildPy},
    cffi_modules=["uring/_build.py:ffibuilder"],
    ext_modules=[Extension("ringleader.drivers.postgres._pgwire",
                           ["drivers/postgres/_pgwire.c"],
                           extra_compile_args=["-O2"])],
)
