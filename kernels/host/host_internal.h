/*
 * Internals of the host device runtime (pqc_dev.h on worker threads).
 *
 * One mutex per device guards everything below it: streams, buffers, key
 * slots, the ready list and the counters. Workers hold it only to pick or
 * retire work, never while running lanes or copying, so the lock is held
 * for microseconds while a batch takes milliseconds.
 *
 * Scheduling. Each stream is a FIFO of commands; only its head may run. A
 * head that can run sits on the device's ready list. An idle worker takes
 * the first ready command whose stall (if any) is over and claims the next
 * block of its lanes; once every lane is claimed the command leaves the
 * list, and the worker that finishes its last lane retires it and puts the
 * stream's next command on the list. So one batch spreads over all
 * workers, a stream's commands keep their order, and streams overlap.
 *
 * Fixed cost per batch. Handing work between threads costs a wake-up of
 * tens of microseconds, as much as a small batch's lanes. So a thread
 * that waits in synchronize runs blocks of its own stream's ready work
 * while fewer threads than workers are running blocks (as when the
 * workers are still waking); a copy queued on an idle stream runs in the
 * queueing call; and a command of one block is left to a stream's waiter
 * instead of waking a worker. Workers are still woken for everything
 * else, and a waiter that stops waiting with work listed wakes them, so
 * no work is left stranded.
 *
 * Lifetimes. A buffer or stream freed while queued commands still name it
 * leaves the device's live list at once (its handle is refused from then
 * on) and is released by whoever retires the last command that uses it. A
 * key slot freed while lanes sign with it is released by the last of them.
 */
#ifndef PQC_HOST_INTERNAL_H
#define PQC_HOST_INTERNAL_H

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "pqc_dev.h"

/* Limits that keep a device's memory bounded (reported by get_info). */
#define PQC_HOST_MAX_DEVICES 64 /* open at once, per process */
#define PQC_HOST_MAX_THREADS 256
#define PQC_HOST_MAX_STREAMS 256
#define PQC_HOST_MAX_BUFFERS 65536
#define PQC_HOST_MAX_KEY_SLOTS 1024
#define PQC_HOST_QUEUE_DEPTH 1024
#define PQC_HOST_MEM_LIMIT ((uint64_t)1 << 30)

/*
 * Lanes a worker claims at once: about four blocks per worker per batch,
 * so that uneven lanes (ML-DSA signing repeats its loop a random number of
 * times) still balance, and at most PQC_HOST_BLOCK_MAX so that a block's
 * per-lane bookkeeping fits on the stack.
 */
#define PQC_HOST_BLOCKS_PER_THREAD 4
#define PQC_HOST_BLOCK_MAX 32

enum pqc_host_op { PQC_HOST_OP_COPY, PQC_HOST_OP_LAUNCH };

struct pqc_dev_buffer {
    pqc_dev_buffer *next; /* the device's live list */
    uint8_t *data;        /* NULL when size is 0 */
    size_t size;
    uint32_t uses; /* queued commands that name this buffer */
    int freed;     /* off the live list; release when uses reaches 0 */
};

typedef struct pqc_host_cmd pqc_host_cmd;
struct pqc_host_cmd {
    pqc_host_cmd *next;       /* the stream's FIFO */
    pqc_host_cmd *ready_next; /* the device's ready list */
    pqc_dev_stream *stream;
    int op;
    int listed; /* on the ready list: some units are still unclaimed */

    /* Work units: lanes of a launch, or 1 for a copy (0 if empty). */
    size_t units, claimed, done, block;

    /* PQC_HOST_OP_COPY */
    uint8_t *dst;
    const uint8_t *src;
    size_t size;

    /* PQC_HOST_OP_LAUNCH: argument bases and record sizes, launch order */
    int kernel;
    unsigned param, n_in, n_out;
    uint8_t *arg[PQC_DEV_MAX_ARGS];
    size_t rec[PQC_DEV_MAX_ARGS];
    int32_t *status;
    int fail;             /* injected: the lanes fail with PQC_ERR_DEVICE */
    uint32_t stall_ms;    /* injected: wait this long once at the head */
    uint32_t stall_epoch; /* the device's stall_epoch when it was taken */
    struct timespec not_before;

    pqc_dev_buffer *uses[PQC_DEV_MAX_ARGS + 1];
    unsigned n_uses;
};

struct pqc_dev_stream {
    pqc_dev_stream *next; /* the device's live list */
    pqc_host_cmd *head, *tail;
    pthread_cond_t wake; /* waiters: the head retired or became ready */
    uint32_t queued;
    uint32_t waiters; /* threads inside synchronize */
    int error;        /* first failure since it was last reported */
    int destroyed;    /* off the live list; release once idle */
};

typedef struct pqc_host_slot {
    void *key; /* mldsa_expanded_sk_bytes(ps) bytes */
    size_t size;
    unsigned ps;
    uint32_t refs; /* lanes signing with it right now */
    int freed;
} pqc_host_slot;

struct pqc_dev {
    pthread_mutex_t lock;
    pthread_cond_t work; /* workers: a command is ready, or closing */
    pthread_t *workers;
    uint32_t n_workers;
    uint32_t id;
    uint32_t users; /* calls inside; guarded by the registry's lock */
    int closing;

    pqc_dev_stream *streams;
    uint32_t n_streams;
    pqc_dev_buffer *buffers;
    uint32_t n_buffers;
    uint64_t mem_used;

    pqc_host_cmd *ready_head, *ready_tail;
    uint64_t pending; /* commands queued on every stream */
    uint32_t running; /* threads running a block right now */

    pqc_host_slot *slots[PQC_HOST_MAX_KEY_SLOTS];
    uint32_t slots_used;

    uint32_t fail_next, stall_next, stall_ms;
    uint32_t stall_epoch; /* bumped by PQC_DEV_FAULT_NONE: ends all stalls */
    uint64_t launches, lanes, faults;
};

/* host_device.c: every public call brackets its work with enter/leave. */
int pqc_host_enter(pqc_dev *dev);
void pqc_host_leave(pqc_dev *dev);
void pqc_host_deadline(struct timespec *ts, uint32_t ms);
int pqc_host_init_cond(pthread_cond_t *cond);
void *pqc_host_worker(void *arg);

/*
 * host_device.c (dev->lock held). can_start: whether cmd is listed and
 * not held back by a stall. work_on: claim the next block of cmd, run it
 * with the lock released, and retire cmd if that was its last block.
 */
int pqc_host_can_start(const pqc_dev *dev, const pqc_host_cmd *cmd);
void pqc_host_work_on(pqc_dev *dev, pqc_host_cmd *cmd);

/* host_stream.c (called with dev->lock held) */
pqc_dev_stream *pqc_host_find_stream(pqc_dev *dev, const pqc_dev_stream *s);
void pqc_host_retire(pqc_dev *dev, pqc_host_cmd *cmd);
void pqc_host_free_streams(pqc_dev *dev);

/* host_memory.c */
pqc_dev_buffer *pqc_host_find_buffer(pqc_dev *dev, const pqc_dev_buffer *b);
void pqc_host_unuse(pqc_dev *dev, pqc_dev_buffer *buf);
void pqc_host_free_buffers(pqc_dev *dev);
void pqc_host_free_slots(pqc_dev *dev);
const void *pqc_host_slot_acquire(pqc_dev *dev, uint32_t id, unsigned ps);
void pqc_host_slot_release(pqc_dev *dev, uint32_t id);
void pqc_host_wipe(void *p, size_t n);

/* host_kernels.c: runs lanes [first, last) of a launch, lock not held. */
void pqc_host_run_lanes(pqc_dev *dev, const pqc_host_cmd *cmd, size_t first,
                        size_t last);

#endif
