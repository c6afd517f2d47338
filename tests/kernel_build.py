"""Build portable C kernels into a throwaway cffi extension for the tests.

Each test module names the C files it needs and the declarations it calls;
``build_kernels`` compiles them with the project's strict flags (a warning is
an error) in cffi's API mode and imports the result. A build is cached for
the whole session, keyed by its arguments, so several test modules asking for
the same kernels compile them once.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import cffi

ROOT = Path(__file__).resolve().parent.parent
REF_DIR = ROOT / "kernels" / "ref"
INCLUDE_DIRS = (REF_DIR, ROOT / "kernels" / "include")
COMPILE_ARGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror")


# The portable reference's translation units (kernels/ref), for tests that
# compile the reference on its own, without the dispatch table.
MLKEM_SOURCES = ["fips202.c", "mlkem_ntt.c", "mlkem_poly.c", "mlkem.c"]
MLDSA_SOURCES = [
    "mldsa_params.c",
    "mldsa_poly.c",
    "mldsa_sample.c",
    "mldsa_pack.c",
    "mldsa_keygen.c",
    "mldsa_sign.c",
    "mldsa_verify.c",
    "mldsa_batch.c",
]
REF_SOURCES = MLKEM_SOURCES + MLDSA_SOURCES


def build_kernels(
    name: str,
    cdef: str,
    sources: list[str] | tuple[str, ...],
    headers: list[str] | tuple[str, ...] | None = None,
    defines: tuple[str, ...] = (),
) -> ModuleType:
    """Compile ``sources`` and return the extension module (``.ffi``, ``.lib``).

    ``name`` is the module name (a Python identifier), ``cdef`` the C
    declarations the tests call, ``sources`` file names under
    ``kernels/ref``. ``headers`` are included by the generated wrapper; by
    default, every ``.h`` beside a source with the same stem. ``defines``
    names macros defined for every source (``PQC_BACKEND_AVX2`` links the
    dispatch table with that backend).
    """
    if headers is None:
        stems = (Path(s).with_suffix(".h") for s in sources)
        headers = [str(h) for h in stems if (REF_DIR / h).is_file()]
    return _build_cached(name, cdef, tuple(sources), tuple(headers), defines)


@functools.cache
def _build_cached(
    name: str,
    cdef: str,
    sources: tuple[str, ...],
    headers: tuple[str, ...],
    defines: tuple[str, ...],
) -> ModuleType:
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(
        name,
        "".join(f'#include "{h}"\n' for h in headers),
        sources=[str(REF_DIR / s) for s in sources],
        include_dirs=[str(d) for d in INCLUDE_DIRS],
        define_macros=[(d, None) for d in defines],
        extra_compile_args=list(COMPILE_ARGS),
    )

    tmpdir = tempfile.mkdtemp(prefix=f"{name}-")
    atexit.register(shutil.rmtree, tmpdir, ignore_errors=True)
    library = ffi.compile(tmpdir=tmpdir, verbose=False)

    spec = importlib.util.spec_from_file_location(name, library)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
