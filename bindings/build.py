"""The cffi builder for ``bindings._pqc_kernels`` (out-of-line API mode).

``pip install .`` and ``pip install -e .`` run it through setup.py's
``cffi_modules``: it compiles the portable kernels (``kernels/ref``), the
dispatch table (``kernels/dispatch.c``), the native backends this machine
can build (``kernels/x86_64/avx2`` and ``kernels/x86_64/avx512`` on x86-64,
each announced to the dispatch table by a ``PQC_BACKEND_<NAME>`` macro) and
the host device runtime (``kernels/host``) into one extension module with
nothing but a C compiler. A native backend is compiled with per-function
target attributes, not global flags, so the module still loads on a CPU
without the feature (an x86-64 CPU without AVX-512, or without AVX2); the
dispatch probe picks the backend at run time by CPUID, and
``PQC_KERNEL_IMPL`` caps its choice (``kernels/dispatch.h``). After editing
the C, run ``pip install -e .`` again (a few seconds) to rebuild it.

The declarations below are checked against the headers by the compiler
(API mode): a mismatch in a signature or constant fails the build.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
HEADERS = ("pqc_status.h", "pqc_dev.h", "mlkem.h", "mldsa.h", "dispatch.h")
COMPILE_ARGS = ["-O2", "-std=c11", "-DNDEBUG", "-pthread"]

CDEF = """
#define PQC_OK ...
#define PQC_ERR_INVALID_ARG ...
#define PQC_ERR_INVALID_LENGTH ...
#define PQC_ERR_INVALID_KEY ...
#define PQC_ERR_INVALID_SIGNATURE ...
#define PQC_ERR_INVALID_CONTEXT ...
#define PQC_ERR_NO_MEMORY ...
#define PQC_ERR_DEVICE ...
#define PQC_ERR_TIMEOUT ...
#define PQC_ERR_BUSY ...

#define PQC_DEV_ABI_VERSION ...
#define PQC_DEV_KERNEL_MLKEM_KEYGEN ...
#define PQC_DEV_KERNEL_MLKEM_ENCAPS ...
#define PQC_DEV_KERNEL_MLKEM_DECAPS ...
#define PQC_DEV_KERNEL_MLKEM_DECAPS_SEED ...
#define PQC_DEV_KERNEL_MLDSA_KEYGEN ...
#define PQC_DEV_KERNEL_MLDSA_SIGN_MU ...
#define PQC_DEV_KERNEL_MLDSA_VERIFY_MU ...
#define PQC_DEV_MAX_ARGS ...
#define PQC_DEV_FAULT_NONE ...
#define PQC_DEV_FAULT_FAIL ...
#define PQC_DEV_FAULT_STALL ...
#define PQC_DEV_WAIT_FOREVER ...

typedef struct pqc_dev pqc_dev;
typedef struct pqc_dev_stream pqc_dev_stream;
typedef struct pqc_dev_buffer pqc_dev_buffer;

typedef struct pqc_dev_info {
    char name[32];
    char impl[32];
    uint32_t abi_version;
    uint32_t device_id;
    uint32_t threads;
    uint32_t max_streams;
    uint32_t max_buffers;
    uint32_t max_key_slots;
    uint32_t queue_depth;
    uint32_t key_slots_used;
    uint64_t mem_limit;
    uint64_t mem_used;
    uint64_t launches;
    uint64_t lanes;
    uint64_t faults;
} pqc_dev_info;

const char *pqc_dev_status_message(int status);
int pqc_dev_count(uint32_t *count);
int pqc_dev_open(uint32_t id, uint32_t threads, pqc_dev **dev);
int pqc_dev_close(pqc_dev *dev);
int pqc_dev_get_info(pqc_dev *dev, pqc_dev_info *info);
int pqc_dev_kernel_layout(int kernel, unsigned param, size_t *sizes,
                          unsigned *n_in, unsigned *n_out);
int pqc_dev_stream_create(pqc_dev *dev, pqc_dev_stream **stream);
int pqc_dev_stream_destroy(pqc_dev *dev, pqc_dev_stream *stream);
int pqc_dev_stream_synchronize(pqc_dev *dev, pqc_dev_stream *stream,
                               int32_t timeout_ms);
int pqc_dev_stream_query(pqc_dev *dev, pqc_dev_stream *stream);
int pqc_dev_malloc(pqc_dev *dev, size_t size, pqc_dev_buffer **buf);
int pqc_dev_free(pqc_dev *dev, pqc_dev_buffer *buf);
int pqc_dev_buffer_size(pqc_dev *dev, const pqc_dev_buffer *buf,
                        size_t *size);
int pqc_dev_memcpy_h2d(pqc_dev *dev, pqc_dev_stream *stream,
                       pqc_dev_buffer *buf, size_t offset, const void *src,
                       size_t size);
int pqc_dev_memcpy_d2h(pqc_dev *dev, pqc_dev_stream *stream, void *dst,
                       pqc_dev_buffer *buf, size_t offset, size_t size);
int pqc_dev_launch(pqc_dev *dev, pqc_dev_stream *stream, int kernel,
                   unsigned param, size_t n, pqc_dev_buffer *const *args,
                   size_t nargs, pqc_dev_buffer *status);
int pqc_dev_key_load_seed(pqc_dev *dev, unsigned ps, const uint8_t *xi,
                          uint8_t *pk, size_t pk_len, uint32_t *slot);
int pqc_dev_key_load_sk(pqc_dev *dev, unsigned ps, const uint8_t *sk,
                        size_t sk_len, uint32_t *slot);
int pqc_dev_key_free(pqc_dev *dev, uint32_t slot);
int pqc_dev_inject_fault(pqc_dev *dev, int fault, uint32_t count,
                         uint32_t stall_ms);

const char *pqc_impl_name(void);

int mlkem_keygen(unsigned k, uint8_t *ek, uint8_t *dk, const uint8_t seed[64]);
int mlkem_encaps(unsigned k, uint8_t *ct, uint8_t ss[32], const uint8_t *ek,
                 const uint8_t m[32]);
int mlkem_decaps(unsigned k, uint8_t ss[32], const uint8_t *ct,
                 const uint8_t *dk);
int mlkem_decaps_seed(unsigned k, uint8_t ss[32], const uint8_t *ct,
                      const uint8_t seed[64]);
size_t mlkem_ek_bytes(unsigned k);
size_t mlkem_dk_bytes(unsigned k);
size_t mlkem_ct_bytes(unsigned k);

size_t mldsa_pk_bytes(unsigned ps);
size_t mldsa_sk_bytes(unsigned ps);
size_t mldsa_sig_bytes(unsigned ps);
int mldsa_keygen(unsigned ps, uint8_t *pk, uint8_t *sk, const uint8_t xi[32]);
int mldsa_sign_mu(unsigned ps, uint8_t *sig, const uint8_t *sk,
                  const uint8_t mu[64], const uint8_t rnd[32]);
int mldsa_verify_mu(unsigned ps, const uint8_t *pk, const uint8_t mu[64],
                    const uint8_t *sig, size_t siglen);
int mldsa_verify(unsigned ps, const uint8_t *pk, const uint8_t *msg,
                 size_t mlen, const uint8_t *ctx, size_t ctxlen,
                 const uint8_t *sig, size_t siglen);
int mldsa_tr_from_pk(unsigned ps, uint8_t tr[64], const uint8_t *pk);
void mldsa_compute_mu(uint8_t mu[64], const uint8_t tr[64],
                      const uint8_t *mprime, size_t mlen);
"""


def _native_backends() -> list[str]:
    """The backends of ``kernels/`` that this machine's compiler can build.

    The avx512 backend runs on top of the avx2 one, so it comes with it.
    """
    if platform.machine().lower() in ("x86_64", "amd64"):
        return ["avx2", "avx512"]
    return []


def _sources() -> list[Path]:
    ref = sorted((KERNELS / "ref").glob("*.c"))
    native = [
        c
        for backend in _native_backends()
        for c in sorted((KERNELS / "x86_64" / backend).glob("*.c"))
    ]
    host = sorted((KERNELS / "host").glob("*.c"))
    return [*ref, KERNELS / "dispatch.c", *native, *host]


def make_builder(absolute: bool = False) -> cffi.FFI:
    """Declare the extension module.

    Paths are relative to the working directory (setuptools wants that, and
    pip runs setup.py in the project root) unless ``absolute``.
    """
    place = str if absolute else os.path.relpath
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "bindings._pqc_kernels",
        "".join(f'#include "{h}"\n' for h in HEADERS),
        sources=[place(f) for f in _sources()],
        include_dirs=[place(KERNELS / d) for d in ("include", "ref", ".")],
        define_macros=[(f"PQC_BACKEND_{b.upper()}", None) for b in _native_backends()],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=["-pthread"],
    )
    return builder


ffibuilder = make_builder()
