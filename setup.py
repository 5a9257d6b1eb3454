# The cffi extension (API mode) must be declared through setup(); everything else
# lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["uring/_build.py:ffibuilder"])
