/*
 * Host device runtime: streams, their command queues, copies and launches.
 */
#include "host_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

pqc_dev_stream *pqc_host_find_stream(pqc_dev *dev, const pqc_dev_stream *s)
{
    for (pqc_dev_stream *it = dev->streams; it != NULL; it = it->next) {
        if (it == s) {
            return it;
        }
    }
    return NULL;
}

static void unlink_stream(pqc_dev *dev, pqc_dev_stream *s)
{
    pqc_dev_stream **link = &dev->streams;

    while (*link != s) {
        link = &(*link)->next;
    }
    *link = s->next;
    s->next = NULL;
}

/* A destroyed stream goes once no command and no waiter needs it. */
static void release_stream_if_done(pqc_dev *dev, pqc_dev_stream *s)
{
    if (s->destroyed && s->head == NULL && s->waiters == 0) {
        pthread_cond_destroy(&s->wake);
        free(s);
        dev->n_streams--;
    }
}

void pqc_host_free_streams(pqc_dev *dev)
{
    while (dev->streams != NULL) {
        pqc_dev_stream *s = dev->streams;

        dev->streams = s->next;
        pthread_cond_destroy(&s->wake);
        free(s);
        dev->n_streams--;
    }
}

/* ---- Running the queue (dev->lock held) ---------------------------- */

static void ready_append(pqc_dev *dev, pqc_host_cmd *cmd)
{
    cmd->ready_next = NULL;
    cmd->listed = 1;
    if (dev->ready_tail == NULL) {
        dev->ready_head = cmd;
    } else {
        dev->ready_tail->ready_next = cmd;
    }
    dev->ready_tail = cmd;
}

/* Pop the head of its stream, drop its buffer uses, count and free it. */
static void pop_head(pqc_dev *dev, pqc_host_cmd *cmd)
{
    pqc_dev_stream *s = cmd->stream;

    if (cmd->op == PQC_HOST_OP_LAUNCH) {
        dev->launches++;
        dev->lanes += cmd->units;
        if (cmd->fail) {
            dev->faults++;
            s->error = s->error != PQC_OK ? s->error : PQC_ERR_DEVICE;
        }
    }
    for (unsigned i = 0; i < cmd->n_uses; i++) {
        pqc_host_unuse(dev, cmd->uses[i]);
    }

    s->head = cmd->next;
    if (s->head == NULL) {
        s->tail = NULL;
    }
    s->queued--;
    dev->pending--;
    free(cmd);
}

/*
 * Wake the workers a newly listed command needs. A command of one block
 * whose stream has a waiter is the waiter's to run (it was just woken); a
 * stalled one needs a worker that keeps its time.
 */
static void wake_workers(pqc_dev *dev, const pqc_host_cmd *cmd)
{
    if (cmd->units > cmd->block) {
        pthread_cond_broadcast(&dev->work);
    } else if (cmd->stream->waiters == 0 || cmd->stall_ms > 0) {
        pthread_cond_signal(&dev->work);
    }
}

/*
 * Make the stream's head runnable. Empty commands (a launch of 0 lanes, a
 * copy of 0 bytes) have nothing for a worker to do and retire here.
 */
static void advance(pqc_dev *dev, pqc_dev_stream *s)
{
    pqc_host_cmd *cmd;

    while ((cmd = s->head) != NULL && cmd->units == 0 && cmd->stall_ms == 0) {
        pop_head(dev, cmd);
    }
    if (cmd != NULL) {
        if (cmd->stall_ms > 0) {
            pqc_host_deadline(&cmd->not_before, cmd->stall_ms);
        }
        ready_append(dev, cmd);
        wake_workers(dev, cmd);
    }
    if (s->waiters > 0) {
        pthread_cond_broadcast(&s->wake);
    }
    if (dev->closing && dev->pending == 0) {
        pthread_cond_broadcast(&dev->work);
    }
    release_stream_if_done(dev, s);
}

void pqc_host_retire(pqc_dev *dev, pqc_host_cmd *cmd)
{
    pqc_dev_stream *s = cmd->stream;

    pop_head(dev, cmd);
    advance(dev, s);
}

/*
 * Append cmd to stream s, which has room (the caller checked queue_depth).
 * cmd belongs to the stream from here on: it may already be retired and
 * freed when this returns.
 */
static void enqueue(pqc_dev *dev, pqc_dev_stream *s, pqc_host_cmd *cmd)
{
    cmd->stream = s;
    if (s->tail == NULL) {
        s->head = cmd;
    } else {
        s->tail->next = cmd;
    }
    s->tail = cmd;
    s->queued++;
    dev->pending++;
    if (s->head == cmd) {
        advance(dev, s);
    }
}

/* ---- Streams ------------------------------------------------------- */

int pqc_dev_stream_create(pqc_dev *dev, pqc_dev_stream **stream)
{
    pqc_dev_stream *s;
    int rc = PQC_OK;

    if (stream == NULL || pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    *stream = NULL;
    s = calloc(1, sizeof(*s));
    if (s != NULL && pqc_host_init_cond(&s->wake) != 0) {
        free(s);
        s = NULL;
    }

    pthread_mutex_lock(&dev->lock);
    if (s == NULL || dev->n_streams >= PQC_HOST_MAX_STREAMS) {
        rc = PQC_ERR_NO_MEMORY;
        if (s != NULL) {
            pthread_cond_destroy(&s->wake);
        }
        free(s);
    } else {
        s->next = dev->streams;
        dev->streams = s;
        dev->n_streams++;
        *stream = s;
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return rc;
}

int pqc_dev_stream_destroy(pqc_dev *dev, pqc_dev_stream *stream)
{
    pqc_dev_stream *s;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    s = pqc_host_find_stream(dev, stream);
    if (s != NULL) {
        unlink_stream(dev, s);
        s->destroyed = 1;
        release_stream_if_done(dev, s);
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return s != NULL ? PQC_OK : PQC_ERR_INVALID_ARG;
}

/* An idle stream reports (and forgets) the first error it recorded. */
static int take_error(pqc_dev_stream *s)
{
    int rc = s->error;

    s->error = PQC_OK;
    return rc;
}

/* One wait for news of the stream; nonzero once the deadline has passed. */
static int wait_once(pqc_dev *dev, pqc_dev_stream *s, int32_t timeout_ms,
                     const struct timespec *deadline)
{
    if (timeout_ms == PQC_DEV_WAIT_FOREVER) {
        pthread_cond_wait(&s->wake, &dev->lock);
        return 0;
    }
    return pthread_cond_timedwait(&s->wake, &dev->lock, deadline) == ETIMEDOUT;
}

static int passed(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/*
 * Run a block of the stream's head in the waiting thread, if it can start,
 * the deadline allows (a timeout of 0 only looks) and fewer threads than
 * workers are running blocks. So the waiter starts a batch while the
 * workers are still waking, but never makes more runners than cores,
 * which would stretch a long launch by preemption and cache thrashing. A
 * block it starts just before the deadline may end after it, by at most
 * one block's time.
 */
static int help(pqc_dev *dev, pqc_dev_stream *s, int32_t timeout_ms,
                const struct timespec *deadline)
{
    pqc_host_cmd *cmd = s->head;

    if (cmd == NULL || timeout_ms == 0 || dev->running >= dev->n_workers ||
        !pqc_host_can_start(dev, cmd)) {
        return 0;
    }
    if (timeout_ms != PQC_DEV_WAIT_FOREVER && passed(deadline)) {
        return 0;
    }
    pqc_host_work_on(dev, cmd);
    return 1;
}

static int wait_idle(pqc_dev *dev, pqc_dev_stream *s, int32_t timeout_ms)
{
    struct timespec deadline = {0, 0};
    int expired = 0;
    int rc;

    if (timeout_ms != PQC_DEV_WAIT_FOREVER) {
        pqc_host_deadline(&deadline, (uint32_t)timeout_ms);
    }
    s->waiters++;
    while (s->head != NULL && !expired) {
        if (!help(dev, s, timeout_ms, &deadline)) {
            expired = wait_once(dev, s, timeout_ms, &deadline);
        }
    }
    s->waiters--;

    /* Work left to this waiter goes back to the workers. */
    if (s->head != NULL && s->head->listed) {
        pthread_cond_broadcast(&dev->work);
    }

    rc = s->head != NULL ? PQC_ERR_TIMEOUT : take_error(s);
    release_stream_if_done(dev, s);
    return rc;
}

int pqc_dev_stream_synchronize(pqc_dev *dev, pqc_dev_stream *stream,
                               int32_t timeout_ms)
{
    pqc_dev_stream *s;
    int rc = PQC_ERR_INVALID_ARG;

    if (timeout_ms < PQC_DEV_WAIT_FOREVER || pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    s = pqc_host_find_stream(dev, stream);
    if (s != NULL) {
        rc = wait_idle(dev, s, timeout_ms);
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return rc;
}

int pqc_dev_stream_query(pqc_dev *dev, pqc_dev_stream *stream)
{
    pqc_dev_stream *s;
    int rc = PQC_ERR_INVALID_ARG;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    s = pqc_host_find_stream(dev, stream);
    if (s != NULL) {
        rc = s->head != NULL ? PQC_ERR_BUSY : take_error(s);
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return rc;
}

/* ---- Copies -------------------------------------------------------- */

/*
 * A copy on an idle stream has nothing to wait for, so the queueing
 * thread runs it at once (unlocked: its command at the head keeps the
 * stream and the buffer alive) instead of waking a worker for it.
 */
static void run_inline(pqc_dev *dev, pqc_dev_stream *s, pqc_host_cmd *cmd)
{
    cmd->stream = s;
    cmd->claimed = cmd->units;
    s->head = cmd;
    s->tail = cmd;
    s->queued++;
    dev->pending++;

    pthread_mutex_unlock(&dev->lock);
    memcpy(cmd->dst, cmd->src, cmd->size);
    pthread_mutex_lock(&dev->lock);

    cmd->done = cmd->units;
    pqc_host_retire(dev, cmd);
}

/*
 * Validate a copy of size bytes at offset of buf and queue it. to_device
 * says which way; host is the caller's memory.
 */
static int queue_copy(pqc_dev *dev, pqc_dev_stream *stream, pqc_dev_buffer *buf,
                      size_t offset, void *host, size_t size, int to_device)
{
    pqc_host_cmd *cmd = calloc(1, sizeof(*cmd));
    pqc_dev_stream *s = pqc_host_find_stream(dev, stream);
    pqc_dev_buffer *b = pqc_host_find_buffer(dev, buf);
    int rc = PQC_OK;

    if (cmd == NULL) {
        return PQC_ERR_NO_MEMORY;
    }
    if (s == NULL || b == NULL || dev->closing || (host == NULL && size)) {
        rc = PQC_ERR_INVALID_ARG;
    } else if (offset > b->size || size > b->size - offset) {
        rc = PQC_ERR_INVALID_LENGTH;
    } else if (s->queued >= PQC_HOST_QUEUE_DEPTH) {
        rc = PQC_ERR_BUSY;
    }
    if (rc != PQC_OK) {
        free(cmd);
        return rc;
    }

    cmd->op = PQC_HOST_OP_COPY;
    cmd->units = size > 0 ? 1 : 0;
    cmd->block = 1;
    cmd->size = size;
    cmd->dst = to_device ? b->data + offset : host;
    cmd->src = to_device ? host : b->data + offset;
    cmd->uses[cmd->n_uses++] = b;
    b->uses++;
    if (s->head == NULL && cmd->units > 0) {
        run_inline(dev, s, cmd);
    } else {
        enqueue(dev, s, cmd);
    }
    return PQC_OK;
}

static int copy_call(pqc_dev *dev, pqc_dev_stream *stream, pqc_dev_buffer *buf,
                     size_t offset, void *host, size_t size, int to_device)
{
    int rc;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    rc = queue_copy(dev, stream, buf, offset, host, size, to_device);
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return rc;
}

int pqc_dev_memcpy_h2d(pqc_dev *dev, pqc_dev_stream *stream,
                       pqc_dev_buffer *buf, size_t offset, const void *src,
                       size_t size)
{
    /* The copy only reads src; the cast lets one command type serve both. */
    return copy_call(dev, stream, buf, offset, (void *)src, size, 1);
}

int pqc_dev_memcpy_d2h(pqc_dev *dev, pqc_dev_stream *stream, void *dst,
                       pqc_dev_buffer *buf, size_t offset, size_t size)
{
    return copy_call(dev, stream, buf, offset, dst, size, 0);
}

/* ---- Launches ------------------------------------------------------ */

/* n records of rec bytes fit in buf (without overflow). */
static int fits(const pqc_dev_buffer *buf, size_t n, size_t rec)
{
    return rec == 0 || n <= buf->size / rec;
}

/*
 * Look up each argument of a launch of n lanes, check sizes and that no
 * buffer repeats, and record the bases in cmd. Takes no buffer uses.
 */
static int bind_args(pqc_dev *dev, pqc_host_cmd *cmd, size_t n,
                     pqc_dev_buffer *const *args, pqc_dev_buffer *status)
{
    unsigned nargs = cmd->n_in + cmd->n_out;
    pqc_dev_buffer *found[PQC_DEV_MAX_ARGS + 1];

    for (unsigned i = 0; i <= nargs; i++) {
        pqc_dev_buffer *h = i < nargs ? args[i] : status;
        size_t rec = i < nargs ? cmd->rec[i] : sizeof(int32_t);

        found[i] = pqc_host_find_buffer(dev, h);
        if (found[i] == NULL) {
            return PQC_ERR_INVALID_ARG;
        }
        for (unsigned j = 0; j < i; j++) {
            if (found[j] == found[i]) {
                return PQC_ERR_INVALID_ARG;
            }
        }
        if (!fits(found[i], n, rec)) {
            return PQC_ERR_INVALID_LENGTH;
        }
    }

    for (unsigned i = 0; i <= nargs; i++) {
        cmd->uses[cmd->n_uses++] = found[i];
    }
    for (unsigned i = 0; i < nargs; i++) {
        cmd->arg[i] = found[i]->data;
    }
    cmd->status = (int32_t *)(void *)found[nargs]->data;
    return PQC_OK;
}

/* Consume the injected faults due for this launch (in call order). */
static void take_faults(pqc_dev *dev, pqc_host_cmd *cmd)
{
    if (dev->fail_next > 0) {
        dev->fail_next--;
        cmd->fail = 1;
    }
    if (dev->stall_next > 0) {
        dev->stall_next--;
        cmd->stall_ms = dev->stall_ms;
        cmd->stall_epoch = dev->stall_epoch;
    }
}

static uint32_t block_size(const pqc_dev *dev, size_t n)
{
    size_t per = PQC_HOST_BLOCKS_PER_THREAD * (size_t)dev->n_workers;
    size_t block = (n + per - 1) / per;

    if (block < 1) {
        return 1;
    }
    return block > PQC_HOST_BLOCK_MAX ? PQC_HOST_BLOCK_MAX : (uint32_t)block;
}

static int queue_launch(pqc_dev *dev, pqc_dev_stream *stream, pqc_host_cmd *cmd,
                        size_t n, pqc_dev_buffer *const *args,
                        pqc_dev_buffer *status)
{
    pqc_dev_stream *s = pqc_host_find_stream(dev, stream);
    int rc;

    if (s == NULL || dev->closing) {
        return PQC_ERR_INVALID_ARG;
    }
    if (s->queued >= PQC_HOST_QUEUE_DEPTH) {
        return PQC_ERR_BUSY;
    }
    if (n > 0) {
        rc = bind_args(dev, cmd, n, args, status);
        if (rc != PQC_OK) {
            return rc;
        }
    }
    for (unsigned i = 0; i < cmd->n_uses; i++) {
        cmd->uses[i]->uses++;
    }
    cmd->units = n;
    cmd->block = block_size(dev, n);
    take_faults(dev, cmd);
    enqueue(dev, s, cmd);
    return PQC_OK;
}

/* A launch's own arguments, before any device state is consulted. */
static int prepare_launch(pqc_host_cmd *cmd, int kernel, unsigned param,
                          size_t n, pqc_dev_buffer *const *args, size_t nargs)
{
    int rc =
        pqc_dev_kernel_layout(kernel, param, cmd->rec, &cmd->n_in, &cmd->n_out);

    if (rc != PQC_OK || nargs != cmd->n_in + cmd->n_out) {
        return PQC_ERR_INVALID_ARG;
    }
    if (n > 0 && args == NULL && nargs > 0) {
        return PQC_ERR_INVALID_ARG;
    }
    cmd->op = PQC_HOST_OP_LAUNCH;
    cmd->kernel = kernel;
    cmd->param = param;
    return PQC_OK;
}

int pqc_dev_launch(pqc_dev *dev, pqc_dev_stream *stream, int kernel,
                   unsigned param, size_t n, pqc_dev_buffer *const *args,
                   size_t nargs, pqc_dev_buffer *status)
{
    pqc_host_cmd *cmd;
    int rc;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    cmd = calloc(1, sizeof(*cmd));
    rc = cmd == NULL ? PQC_ERR_NO_MEMORY
                     : prepare_launch(cmd, kernel, param, n, args, nargs);

    if (rc == PQC_OK) {
        pthread_mutex_lock(&dev->lock);
        rc = queue_launch(dev, stream, cmd, n, args, status);
        pthread_mutex_unlock(&dev->lock);
    }
    if (rc != PQC_OK) {
        free(cmd);
    }
    pqc_host_leave(dev);
    return rc;
}
