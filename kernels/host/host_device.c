/*
 * Host device runtime: the device registry, open and close, information,
 * fault injection and the worker threads.
 */
#include "host_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../dispatch.h"

/*
 * Open devices. A handle is checked against this table before anything
 * reads through it, and `users` keeps a device alive while calls are inside
 * it, so a stale handle or a racing close is an error, not a crash.
 */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_idle = PTHREAD_COND_INITIALIZER;
static pqc_dev *registry[PQC_HOST_MAX_DEVICES];

const char *pqc_dev_status_message(int status)
{
    switch (status) {
    case PQC_OK:
        return "The operation succeeded.";
    case PQC_ERR_INVALID_ARG:
        return "An argument is invalid: a null pointer, an unknown handle, "
               "kernel or parameter set, or a closed device.";
    case PQC_ERR_INVALID_LENGTH:
        return "A buffer or length does not fit the operation.";
    case PQC_ERR_INVALID_KEY:
        return "The key is invalid or not loaded.";
    case PQC_ERR_INVALID_SIGNATURE:
        return "The signature is invalid.";
    case PQC_ERR_INVALID_CONTEXT:
        return "The context string is longer than 255 bytes.";
    case PQC_ERR_NO_MEMORY:
        return "Memory ran out or a device limit was reached.";
    case PQC_ERR_DEVICE:
        return "The device failed while running the work.";
    case PQC_ERR_TIMEOUT:
        return "The work did not finish before the deadline; it keeps "
               "running.";
    case PQC_ERR_BUSY:
        return "The resource is busy with queued work.";
    default:
        return "The status code is unknown.";
    }
}

static int registry_slot(const pqc_dev *dev)
{
    for (int i = 0; i < PQC_HOST_MAX_DEVICES; i++) {
        if (dev != NULL && registry[i] == dev) {
            return i;
        }
    }
    return -1;
}

int pqc_host_enter(pqc_dev *dev)
{
    int rc = PQC_ERR_INVALID_ARG;

    pthread_mutex_lock(&registry_lock);
    if (registry_slot(dev) >= 0) {
        dev->users++;
        rc = PQC_OK;
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

void pqc_host_leave(pqc_dev *dev)
{
    pthread_mutex_lock(&registry_lock);
    if (--dev->users == 0) {
        pthread_cond_broadcast(&registry_idle);
    }
    pthread_mutex_unlock(&registry_lock);
}

void pqc_host_deadline(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int pqc_dev_count(uint32_t *count)
{
    if (count == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    *count = 1;
    return PQC_OK;
}

/* ---- Workers ------------------------------------------------------- */

static int before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec ||
           (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void ready_remove(pqc_dev *dev, pqc_host_cmd *cmd)
{
    pqc_host_cmd **link = &dev->ready_head;
    pqc_host_cmd *prev = NULL;

    while (*link != cmd) {
        prev = *link;
        link = &(*link)->ready_next;
    }
    *link = cmd->ready_next;
    if (dev->ready_tail == cmd) {
        dev->ready_tail = prev;
    }
    cmd->ready_next = NULL;
    cmd->listed = 0;
}

/* Whether cmd must still wait: a stall not ended by close or clearing. */
static int held_back(const pqc_dev *dev, const pqc_host_cmd *cmd,
                     const struct timespec *now)
{
    return cmd->stall_ms > 0 && !dev->closing &&
           cmd->stall_epoch == dev->stall_epoch &&
           before(now, &cmd->not_before);
}

/*
 * The first ready command that may start now. A stalled one is skipped
 * until its time comes; *wake gets the earliest such time so the worker
 * sleeps no longer than needed.
 */
static pqc_host_cmd *next_ready(pqc_dev *dev, struct timespec *wake,
                                int *has_wake)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    *has_wake = 0;
    for (pqc_host_cmd *c = dev->ready_head; c != NULL; c = c->ready_next) {
        if (!held_back(dev, c, &now)) {
            return c;
        }
        if (!*has_wake || before(&c->not_before, wake)) {
            *wake = c->not_before;
            *has_wake = 1;
        }
    }
    return NULL;
}

int pqc_host_can_start(const pqc_dev *dev, const pqc_host_cmd *cmd)
{
    struct timespec now;

    if (!cmd->listed) {
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    return !held_back(dev, cmd, &now);
}

static void run_unit(pqc_dev *dev, pqc_host_cmd *cmd, size_t first, size_t last)
{
    if (cmd->op == PQC_HOST_OP_COPY) {
        memcpy(cmd->dst, cmd->src, cmd->size);
        return;
    }
    pqc_host_run_lanes(dev, cmd, first, last);
}

/*
 * Blocks shrink as a launch nears its end (a share of what is left, at
 * most cmd->block), so the workers finish together instead of one running
 * a full block while the others idle.
 */
void pqc_host_work_on(pqc_dev *dev, pqc_host_cmd *cmd)
{
    size_t first = cmd->claimed;
    size_t ways = 2 * (size_t)dev->n_workers;
    size_t share = (cmd->units - first + ways - 1) / ways;
    size_t last = first + (share < cmd->block ? share : cmd->block);

    if (last > cmd->units) {
        last = cmd->units;
    }
    cmd->claimed = last;
    if (last == cmd->units) {
        ready_remove(dev, cmd);
    }

    dev->running++;
    pthread_mutex_unlock(&dev->lock);
    run_unit(dev, cmd, first, last);
    pthread_mutex_lock(&dev->lock);
    dev->running--;

    cmd->done += last - first;
    if (cmd->done == cmd->units) {
        pqc_host_retire(dev, cmd);
    }
}

void *pqc_host_worker(void *arg)
{
    pqc_dev *dev = arg;
    struct timespec wake;
    int has_wake;

    pthread_mutex_lock(&dev->lock);
    for (;;) {
        pqc_host_cmd *cmd = next_ready(dev, &wake, &has_wake);

        if (cmd != NULL) {
            pqc_host_work_on(dev, cmd);
        } else if (dev->closing && dev->pending == 0) {
            break;
        } else if (has_wake) {
            pthread_cond_timedwait(&dev->work, &dev->lock, &wake);
        } else {
            pthread_cond_wait(&dev->work, &dev->lock);
        }
    }
    pthread_mutex_unlock(&dev->lock);
    return NULL;
}

/* ---- Open and close ------------------------------------------------ */

static uint32_t online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1) {
        return 1;
    }
    return n > PQC_HOST_MAX_THREADS ? PQC_HOST_MAX_THREADS : (uint32_t)n;
}

int pqc_host_init_cond(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = 0;

    /* Deadlines use the monotonic clock: wall-clock jumps move none. */
    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    rc |= pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc |= pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

static int init_sync(pqc_dev *dev)
{
    if (pthread_mutex_init(&dev->lock, NULL) != 0) {
        return -1;
    }
    if (pqc_host_init_cond(&dev->work) != 0) {
        pthread_mutex_destroy(&dev->lock);
        return -1;
    }
    return 0;
}

static void stop_workers(pqc_dev *dev, uint32_t started)
{
    pthread_mutex_lock(&dev->lock);
    dev->closing = 1;
    pthread_cond_broadcast(&dev->work);
    pthread_mutex_unlock(&dev->lock);

    for (uint32_t i = 0; i < started; i++) {
        pthread_join(dev->workers[i], NULL);
    }
}

/* Zero and release everything a device holds; its workers have stopped. */
static void destroy_device(pqc_dev *dev)
{
    pqc_host_free_streams(dev);
    pqc_host_free_buffers(dev);
    pqc_host_free_slots(dev);
    pthread_cond_destroy(&dev->work);
    pthread_mutex_destroy(&dev->lock);
    free(dev->workers);
    pqc_host_wipe(dev, sizeof(*dev));
    free(dev);
}

static int start_workers(pqc_dev *dev, uint32_t threads)
{
    dev->workers = calloc(threads, sizeof(pthread_t));
    if (dev->workers == NULL) {
        return PQC_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < threads; i++) {
        if (pthread_create(&dev->workers[i], NULL, pqc_host_worker, dev)) {
            stop_workers(dev, i);
            return PQC_ERR_NO_MEMORY;
        }
        dev->n_workers = i + 1;
    }
    return PQC_OK;
}

static int register_device(pqc_dev *dev)
{
    int rc = PQC_ERR_NO_MEMORY;

    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < PQC_HOST_MAX_DEVICES; i++) {
        if (registry[i] == NULL) {
            registry[i] = dev;
            rc = PQC_OK;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

int pqc_dev_open(uint32_t id, uint32_t threads, pqc_dev **out)
{
    pqc_dev *dev;
    int rc;

    if (out == NULL || id != 0 || threads > PQC_HOST_MAX_THREADS) {
        return PQC_ERR_INVALID_ARG;
    }
    *out = NULL;

    dev = calloc(1, sizeof(*dev));
    if (dev == NULL) {
        return PQC_ERR_NO_MEMORY;
    }
    if (init_sync(dev) != 0) {
        free(dev);
        return PQC_ERR_NO_MEMORY;
    }
    dev->id = id;

    rc = start_workers(dev, threads == 0 ? online_cores() : threads);
    if (rc == PQC_OK) {
        rc = register_device(dev);
        if (rc != PQC_OK) {
            stop_workers(dev, dev->n_workers);
        }
    }
    if (rc != PQC_OK) {
        destroy_device(dev);
        return rc;
    }
    *out = dev;
    return PQC_OK;
}

int pqc_dev_close(pqc_dev *dev)
{
    int slot;

    pthread_mutex_lock(&registry_lock);
    slot = registry_slot(dev);
    if (slot < 0) {
        pthread_mutex_unlock(&registry_lock);
        return PQC_ERR_INVALID_ARG;
    }
    registry[slot] = NULL;

    /* Refuse new work and cut stalls short, then let calls inside drain. */
    pthread_mutex_lock(&dev->lock);
    dev->closing = 1;
    pthread_cond_broadcast(&dev->work);
    pthread_mutex_unlock(&dev->lock);
    while (dev->users > 0) {
        pthread_cond_wait(&registry_idle, &registry_lock);
    }
    pthread_mutex_unlock(&registry_lock);

    stop_workers(dev, dev->n_workers);
    destroy_device(dev);
    return PQC_OK;
}

/* ---- Information and faults ---------------------------------------- */

static void fill_info(const pqc_dev *dev, pqc_dev_info *info)
{
    /* The kernels' implementation (kernels/dispatch.h); a build without
     * the dispatch table runs the reference. */
    const pqc_impl *impl = pqc_impl_active();

    memset(info, 0, sizeof(*info));
    strcpy(info->name, "host");
    strcpy(info->impl, impl != NULL ? impl->name : "ref");
    info->abi_version = PQC_DEV_ABI_VERSION;
    info->device_id = dev->id;
    info->threads = dev->n_workers;
    info->max_streams = PQC_HOST_MAX_STREAMS;
    info->max_buffers = PQC_HOST_MAX_BUFFERS;
    info->max_key_slots = PQC_HOST_MAX_KEY_SLOTS;
    info->queue_depth = PQC_HOST_QUEUE_DEPTH;
    info->key_slots_used = dev->slots_used;
    info->mem_limit = PQC_HOST_MEM_LIMIT;
    info->mem_used = dev->mem_used;
    info->launches = dev->launches;
    info->lanes = dev->lanes;
    info->faults = dev->faults;
}

int pqc_dev_get_info(pqc_dev *dev, pqc_dev_info *info)
{
    if (info == NULL || pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    fill_info(dev, info);
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return PQC_OK;
}

static int set_fault(pqc_dev *dev, int fault, uint32_t count, uint32_t ms)
{
    switch (fault) {
    case PQC_DEV_FAULT_NONE:
        dev->fail_next = 0;
        dev->stall_next = 0;
        dev->stall_epoch++;
        pthread_cond_broadcast(&dev->work);
        return PQC_OK;
    case PQC_DEV_FAULT_FAIL:
        dev->fail_next = count;
        return PQC_OK;
    case PQC_DEV_FAULT_STALL:
        dev->stall_next = count;
        dev->stall_ms = ms;
        return PQC_OK;
    default:
        return PQC_ERR_INVALID_ARG;
    }
}

int pqc_dev_inject_fault(pqc_dev *dev, int fault, uint32_t count,
                         uint32_t stall_ms)
{
    int rc;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    rc = set_fault(dev, fault, count, stall_ms);
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return rc;
}
