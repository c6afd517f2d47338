"""Builds the cffi extension ``bindings._pqc_kernels``; see bindings/build.py.

Everything else about the package lives in pyproject.toml.
"""

from setuptools import setup

setup(cffi_modules=["bindings/build.py:ffibuilder"])
