/*
 * The pqc-engine device runtime ABI.
 *
 * Shaped like an accelerator runtime (CUDA's runtime API, CANN's ACL): open
 * a device, create streams, allocate device buffers, copy host to device,
 * launch a kernel over a batch, synchronise, copy back. Every call returns a
 * status from pqc_status.h (PQC_OK or a negative PQC_ERR_*), and
 * pqc_dev_status_message() turns a status into a sentence. The host
 * implementation (kernels/host) runs work on its own worker threads; a CUDA
 * or CANN implementation provides the same declarations from another
 * library.
 *
 * Handles. pqc_dev, pqc_dev_stream and pqc_dev_buffer are opaque. Every
 * call names its device; a handle that the device does not know (never
 * made, already freed, or made by another device) is PQC_ERR_INVALID_ARG,
 * never a crash. A closed device is likewise unknown. Handles are
 * addresses: once an object is freed a new one may get its address, and
 * the stale handle then names the new object, as with any runtime whose
 * handles are pointers.
 *
 * Streams and ordering. Copies and launches are asynchronous: the call
 * checks its arguments, queues the command on a stream and returns. The
 * commands of one stream run one after another in the order they were
 * queued; commands of different streams may run at the same time. A launch
 * spreads the lanes of its batch over all worker threads. Host memory named
 * by a copy must stay valid (and, for a source, unchanged) until the stream
 * has run that copy: until pqc_dev_stream_synchronize() or
 * pqc_dev_stream_query() has found the stream idle (returned anything but
 * PQC_ERR_TIMEOUT, PQC_ERR_BUSY or PQC_ERR_INVALID_ARG), or the device is
 * closed.
 *
 * Errors of queued work. A launch that fails while it runs (today only by
 * injected fault, see pqc_dev_inject_fault) writes PQC_ERR_DEVICE to each
 * lane's status and zeroes its outputs; the stream records the error and
 * keeps running its later commands. The next synchronize or query that
 * finds the stream idle returns the recorded error once, then clears it.
 * Per-lane outcomes (an invalid key, a bad signature) are not stream
 * errors: they are in the status buffer only.
 *
 * Batch layout. A batch of n operations is n fixed-size records laid end to
 * end in each buffer ("batch-major"): record i of an argument starts at byte
 * i * record_size. Record sizes per kernel and parameter set come from
 * pqc_dev_kernel_layout(). Randomness (seeds, coins, rnd) is an input: the
 * kernels are deterministic.
 *
 * Thread safety. Every call may be made from any thread, concurrently with
 * any other call, including on the same stream: a stream's order is the
 * order in which its queueing calls returned. Two commands that write (or
 * one writes and one reads) the same buffer from different streams race on
 * its contents, as on any accelerator; the runtime itself stays consistent.
 * pqc_dev_close() may race with other calls on the same device: they either
 * finish before the close proceeds or fail with PQC_ERR_INVALID_ARG.
 *
 * Secrets. Freed buffers, freed key slots and everything left at close are
 * zeroed before their memory is released. The runtime never logs.
 */
#ifndef PQC_DEV_H
#define PQC_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "pqc_status.h"

#if defined(__GNUC__) || defined(__clang__)
#define PQC_DEV_MUST_CHECK __attribute__((warn_unused_result))
#else
#define PQC_DEV_MUST_CHECK
#endif

/* Bumped whenever a declaration below changes meaning. */
#define PQC_DEV_ABI_VERSION 1

typedef struct pqc_dev pqc_dev;
typedef struct pqc_dev_stream pqc_dev_stream;
typedef struct pqc_dev_buffer pqc_dev_buffer;

/*
 * Kernels, with their arguments in launch order: inputs first, then
 * outputs. The parameter is the ML-KEM rank k (2, 3, 4 for ML-KEM-512,
 * -768, -1024) or the ML-DSA set (44, 65, 87). Each lane's status is what
 * the single-call function in mlkem.h or mldsa.h returns for that lane.
 *
 * MLKEM_KEYGEN       in seed (64: d || z); out ek, dk (FIPS 203 Alg. 16)
 * MLKEM_ENCAPS       in ek, m (32); out ct, ss (32)         (Alg. 17)
 * MLKEM_DECAPS       in ct, dk; out ss (32)                 (Alg. 18)
 * MLKEM_DECAPS_SEED  in ct, seed (64: d || z); out ss (32)  (Alg. 16, 18)
 * MLDSA_KEYGEN       in xi (32); out pk, sk                 (FIPS 204 Alg. 6)
 * MLDSA_SIGN_MU      in slot (4: a uint32_t key slot number in host byte
 *                    order), mu (64), rnd (32); out sig     (Alg. 7)
 * MLDSA_VERIFY_MU    in pk, mu (64), sig; no outputs: the lane status is
 *                    PQC_OK or PQC_ERR_INVALID_SIGNATURE    (Alg. 8)
 *
 * A signing lane whose slot number is not loaded, or holds a key of another
 * parameter set, gets PQC_ERR_INVALID_KEY and a zeroed signature.
 */
#define PQC_DEV_KERNEL_MLKEM_KEYGEN 1
#define PQC_DEV_KERNEL_MLKEM_ENCAPS 2
#define PQC_DEV_KERNEL_MLKEM_DECAPS 3
#define PQC_DEV_KERNEL_MLKEM_DECAPS_SEED 4
#define PQC_DEV_KERNEL_MLDSA_KEYGEN 5
#define PQC_DEV_KERNEL_MLDSA_SIGN_MU 6
#define PQC_DEV_KERNEL_MLDSA_VERIFY_MU 7

/* The most arguments (inputs plus outputs) any kernel takes. */
#define PQC_DEV_MAX_ARGS 4

/* Fault kinds for pqc_dev_inject_fault. */
#define PQC_DEV_FAULT_NONE 0  /* cancel pending faults, end stalls */
#define PQC_DEV_FAULT_FAIL 1  /* the launch fails with PQC_ERR_DEVICE */
#define PQC_DEV_FAULT_STALL 2 /* the launch waits stall_ms before running */

/* A timeout_ms that never expires. */
#define PQC_DEV_WAIT_FOREVER (-1)

/* What pqc_dev_get_info reports. Strings are NUL-terminated. */
typedef struct pqc_dev_info {
    char name[32];          /* the runtime: "host" */
    char impl[32];          /* the kernel code in use: "ref" (portable C) */
    uint32_t abi_version;   /* PQC_DEV_ABI_VERSION of the implementation */
    uint32_t device_id;     /* as passed to pqc_dev_open */
    uint32_t threads;       /* worker threads running launches */
    uint32_t max_streams;   /* live streams allowed at once */
    uint32_t max_buffers;   /* live buffers allowed at once */
    uint32_t max_key_slots; /* slot numbers are 0 .. max_key_slots - 1 */
    uint32_t queue_depth;   /* commands one stream may hold queued */
    uint32_t key_slots_used;
    uint64_t mem_limit; /* bytes of buffers allowed at once */
    uint64_t mem_used;  /* bytes of buffers held now */
    uint64_t launches;  /* launches completed since open */
    uint64_t lanes;     /* lanes completed since open */
    uint64_t faults;    /* launches failed by injected faults */
} pqc_dev_info;

/*
 * A sentence describing status (any int; unknown codes get a generic
 * sentence). The string is static: never free it. Thread-safe.
 */
const char *pqc_dev_status_message(int status);

/* ---- Devices ------------------------------------------------------- */

/*
 * count: out, how many devices this runtime offers (the host runtime: 1).
 * Returns PQC_OK, or PQC_ERR_INVALID_ARG for a null count.
 */
PQC_DEV_MUST_CHECK int pqc_dev_count(uint32_t *count);

/*
 * Opens device `id` (0 .. count - 1) with `threads` worker threads (0: one
 * per online core; at most 256) and returns its handle in *dev. Each open
 * makes an independent device with its own workers, streams, buffers and
 * key slots.
 * Returns PQC_OK; PQC_ERR_INVALID_ARG for a bad id, thread count or null
 * dev; PQC_ERR_NO_MEMORY when memory or threads cannot be had (then *dev is
 * NULL).
 */
PQC_DEV_MUST_CHECK int pqc_dev_open(uint32_t id, uint32_t threads,
                                    pqc_dev **dev);

/*
 * Closes dev: waits for every queued command to finish (injected stalls
 * are cut short), stops the workers, zeroes and frees every buffer, stream
 * and key slot still held. The handle and all handles made from it are
 * invalid afterwards.
 * Returns PQC_OK, or PQC_ERR_INVALID_ARG for an unknown device.
 */
PQC_DEV_MUST_CHECK int pqc_dev_close(pqc_dev *dev);

/*
 * info: out, the device's description and counters (see pqc_dev_info).
 * Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
PQC_DEV_MUST_CHECK int pqc_dev_get_info(pqc_dev *dev, pqc_dev_info *info);

/*
 * The record sizes of `kernel` for parameter `param`, in launch order.
 * sizes: out, PQC_DEV_MAX_ARGS entries (unused ones set to 0).
 * n_in, n_out: out, the number of input and output arguments.
 * Needs no device. Returns PQC_OK, or PQC_ERR_INVALID_ARG for an unknown
 * kernel or parameter or a null pointer.
 */
PQC_DEV_MUST_CHECK int pqc_dev_kernel_layout(int kernel, unsigned param,
                                             size_t *sizes, unsigned *n_in,
                                             unsigned *n_out);

/* ---- Streams ------------------------------------------------------- */

/*
 * stream: out, a new empty stream of dev.
 * Returns PQC_OK; PQC_ERR_INVALID_ARG; PQC_ERR_NO_MEMORY when memory runs
 * out or max_streams streams are live.
 */
PQC_DEV_MUST_CHECK int pqc_dev_stream_create(pqc_dev *dev,
                                             pqc_dev_stream **stream);

/*
 * Destroys stream. Returns at once; commands still queued on it run to
 * completion and its memory is released after the last one. Host memory
 * that those commands name must stay valid until then (pqc_dev_close
 * waits for them).
 * Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
PQC_DEV_MUST_CHECK int pqc_dev_stream_destroy(pqc_dev *dev,
                                              pqc_dev_stream *stream);

/*
 * Waits until every command queued on stream has run, for at most
 * timeout_ms milliseconds (0: just look; PQC_DEV_WAIT_FOREVER: no limit).
 * Returns PQC_OK when the stream is idle; PQC_ERR_TIMEOUT when it is not
 * idle by the deadline (the work keeps running, and a later call can
 * succeed); the error a failed command recorded (once; see the top of this
 * file); PQC_ERR_INVALID_ARG for a bad handle or a negative timeout other
 * than PQC_DEV_WAIT_FOREVER.
 *
 * NOTE: the waiting thread helps: while fewer threads than workers are
 * busy it runs blocks of its own stream's launches, so a wait may return
 * up to one block (at most 32 lanes) after its deadline. A copy queued on
 * an idle stream runs inside the queueing call.
 */
PQC_DEV_MUST_CHECK int pqc_dev_stream_synchronize(pqc_dev *dev,
                                                  pqc_dev_stream *stream,
                                                  int32_t timeout_ms);

/*
 * Non-blocking: PQC_ERR_BUSY while commands are queued on stream;
 * otherwise as pqc_dev_stream_synchronize when the stream is idle.
 */
PQC_DEV_MUST_CHECK int pqc_dev_stream_query(pqc_dev *dev,
                                            pqc_dev_stream *stream);

/* ---- Buffers ------------------------------------------------------- */

/*
 * buf: out, a new device buffer of `size` bytes (0 is allowed), zeroed.
 * Returns PQC_OK; PQC_ERR_INVALID_ARG; PQC_ERR_NO_MEMORY when memory runs
 * out, or when mem_limit bytes or max_buffers buffers would be exceeded.
 */
PQC_DEV_MUST_CHECK int pqc_dev_malloc(pqc_dev *dev, size_t size,
                                      pqc_dev_buffer **buf);

/*
 * Frees buf: the handle is invalid at once. Its bytes are zeroed and
 * released when no queued command uses them any more (at once if none
 * does), so a caller may free buffers right after queueing the work that
 * uses them. Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
PQC_DEV_MUST_CHECK int pqc_dev_free(pqc_dev *dev, pqc_dev_buffer *buf);

/*
 * size: out, the size buf was allocated with.
 * Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
PQC_DEV_MUST_CHECK int
pqc_dev_buffer_size(pqc_dev *dev, const pqc_dev_buffer *buf, size_t *size);

/*
 * Queues a copy of `size` bytes from host memory src (in) to buf at byte
 * `offset`. src may be null when size is 0.
 * Returns PQC_OK; PQC_ERR_INVALID_ARG for a bad handle or a null src;
 * PQC_ERR_INVALID_LENGTH when offset + size passes the end of buf;
 * PQC_ERR_BUSY when the stream already holds queue_depth commands;
 * PQC_ERR_NO_MEMORY.
 */
PQC_DEV_MUST_CHECK int pqc_dev_memcpy_h2d(pqc_dev *dev, pqc_dev_stream *stream,
                                          pqc_dev_buffer *buf, size_t offset,
                                          const void *src, size_t size);

/*
 * Queues a copy of `size` bytes of buf from byte `offset` to host memory
 * dst (out). Returns as pqc_dev_memcpy_h2d.
 */
PQC_DEV_MUST_CHECK int pqc_dev_memcpy_d2h(pqc_dev *dev, pqc_dev_stream *stream,
                                          void *dst, pqc_dev_buffer *buf,
                                          size_t offset, size_t size);

/* ---- Launches ------------------------------------------------------ */

/*
 * Queues `kernel` for parameter `param` over a batch of n lanes.
 * args:   in, nargs buffer handles in launch order (inputs, then outputs;
 *         see the kernel table above); nargs must be the kernel's count.
 *         Each must hold n records of its size from offset 0. All of args
 *         and status must be distinct buffers (inputs may not alias
 *         outputs). With n == 0 the handles may be null.
 * status: in, a buffer of at least 4 * n bytes; the launch writes lane i's
 *         status there as an int32_t in host byte order.
 * Returns PQC_OK once queued; PQC_ERR_INVALID_ARG for a bad handle,
 * kernel, parameter or argument count, or repeated buffers;
 * PQC_ERR_INVALID_LENGTH for a buffer too small for n lanes; PQC_ERR_BUSY
 * when the stream's queue is full; PQC_ERR_NO_MEMORY.
 */
PQC_DEV_MUST_CHECK int pqc_dev_launch(pqc_dev *dev, pqc_dev_stream *stream,
                                      int kernel, unsigned param, size_t n,
                                      pqc_dev_buffer *const *args, size_t nargs,
                                      pqc_dev_buffer *status);

/* ---- Key slots (ML-DSA signing keys held on the device) ------------ */

/*
 * Generates the ML-DSA key pair of seed xi (FIPS 204, Algorithm 6),
 * expands its secret key into a free slot and wipes the encoded secret key.
 * ps:   44, 65 or 87.   xi: in, 32 bytes.
 * pk:   out, pk_len bytes (mldsa_pk_bytes(ps)); may be null (pk_len 0) when
 *       the public key is not wanted.
 * slot: out, the slot number for MLDSA_SIGN_MU lanes.
 * Runs in the calling thread. Returns PQC_OK; PQC_ERR_INVALID_ARG;
 * PQC_ERR_INVALID_LENGTH for a wrong pk_len; PQC_ERR_NO_MEMORY when
 * memory runs out or every slot is taken.
 */
PQC_DEV_MUST_CHECK int pqc_dev_key_load_seed(pqc_dev *dev, unsigned ps,
                                             const uint8_t *xi, uint8_t *pk,
                                             size_t pk_len, uint32_t *slot);

/*
 * Expands an encoded ML-DSA secret key (FIPS 204, Algorithm 24) of
 * sk_len bytes into a free slot.
 * Returns as pqc_dev_key_load_seed, and PQC_ERR_INVALID_KEY for a key
 * whose s1 or s2 coefficients are out of range.
 */
PQC_DEV_MUST_CHECK int pqc_dev_key_load_sk(pqc_dev *dev, unsigned ps,
                                           const uint8_t *sk, size_t sk_len,
                                           uint32_t *slot);

/*
 * Frees slot: signing lanes that start after this call and name it fail
 * with PQC_ERR_INVALID_KEY (a lane reads its slot number when it runs, so
 * once the number is handed out again such lanes use the new key). The
 * expanded key is zeroed once no running lane uses it, and only then may
 * the number be handed out again.
 * Returns PQC_OK, or PQC_ERR_INVALID_ARG for a slot that is not loaded.
 */
PQC_DEV_MUST_CHECK int pqc_dev_key_free(pqc_dev *dev, uint32_t slot);

/* ---- Fault injection (for tests of the callers' fallback paths) ---- */

/*
 * PQC_DEV_FAULT_FAIL: the next `count` launches on dev (any stream, in the
 * order their launch calls return) fail when they run, as described at the
 * top of this file. PQC_DEV_FAULT_STALL: the next `count` launches, once
 * they reach the head of their stream, wait stall_ms milliseconds before
 * they start, holding up their stream but no worker thread.
 * PQC_DEV_FAULT_NONE: cancel both, and end the stalls of launches already
 * queued (so a test can release a stalled stream without waiting); count
 * and stall_ms are ignored. A new call of one kind replaces what is
 * pending of that kind.
 * Returns PQC_OK or PQC_ERR_INVALID_ARG.
 */
PQC_DEV_MUST_CHECK int pqc_dev_inject_fault(pqc_dev *dev, int fault,
                                            uint32_t count, uint32_t stall_ms);

#endif
