/*
 * Host device runtime: device buffers and ML-DSA key slots.
 */
#include "host_internal.h"

#include <stdlib.h>
#include <string.h>

#include "mldsa.h"

/*
 * A memset the compiler may not drop as a dead store: the call goes
 * through a volatile pointer, so it must happen even just before free().
 */
static void *(*const volatile wipe_fn)(void *, int, size_t) = memset;

void pqc_host_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        wipe_fn(p, 0, n);
    }
}

/* ---- Buffers ------------------------------------------------------- */

pqc_dev_buffer *pqc_host_find_buffer(pqc_dev *dev, const pqc_dev_buffer *b)
{
    for (pqc_dev_buffer *it = dev->buffers; it != NULL; it = it->next) {
        if (it == b) {
            return it;
        }
    }
    return NULL;
}

static void release_buffer(pqc_dev *dev, pqc_dev_buffer *buf)
{
    pqc_host_wipe(buf->data, buf->size);
    free(buf->data);
    dev->mem_used -= buf->size;
    dev->n_buffers--;
    free(buf);
}

void pqc_host_unuse(pqc_dev *dev, pqc_dev_buffer *buf)
{
    if (--buf->uses == 0 && buf->freed) {
        release_buffer(dev, buf);
    }
}

void pqc_host_free_buffers(pqc_dev *dev)
{
    while (dev->buffers != NULL) {
        pqc_dev_buffer *buf = dev->buffers;

        dev->buffers = buf->next;
        release_buffer(dev, buf);
    }
}

/* Reserve size bytes and one buffer against the device's limits. */
static int reserve(pqc_dev *dev, size_t size)
{
    if (dev->closing) {
        return PQC_ERR_INVALID_ARG;
    }
    if (dev->n_buffers >= PQC_HOST_MAX_BUFFERS ||
        size > PQC_HOST_MEM_LIMIT - dev->mem_used) {
        return PQC_ERR_NO_MEMORY;
    }
    dev->n_buffers++;
    dev->mem_used += size;
    return PQC_OK;
}

static pqc_dev_buffer *new_buffer(size_t size)
{
    pqc_dev_buffer *buf = calloc(1, sizeof(*buf));

    if (buf != NULL && size > 0) {
        buf->data = calloc(1, size);
        if (buf->data == NULL) {
            free(buf);
            return NULL;
        }
    }
    if (buf != NULL) {
        buf->size = size;
    }
    return buf;
}

int pqc_dev_malloc(pqc_dev *dev, size_t size, pqc_dev_buffer **out)
{
    pqc_dev_buffer *buf = NULL;
    int rc;

    if (out == NULL || pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    *out = NULL;
    pthread_mutex_lock(&dev->lock);
    rc = reserve(dev, size);
    pthread_mutex_unlock(&dev->lock);

    if (rc == PQC_OK) {
        buf = new_buffer(size);
    }

    pthread_mutex_lock(&dev->lock);
    if (rc == PQC_OK && buf == NULL) {
        dev->n_buffers--;
        dev->mem_used -= size;
        rc = PQC_ERR_NO_MEMORY;
    } else if (rc == PQC_OK) {
        buf->next = dev->buffers;
        dev->buffers = buf;
        *out = buf;
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return rc;
}

static void unlink_buffer(pqc_dev *dev, pqc_dev_buffer *buf)
{
    pqc_dev_buffer **link = &dev->buffers;

    while (*link != buf) {
        link = &(*link)->next;
    }
    *link = buf->next;
    buf->next = NULL;
}

int pqc_dev_free(pqc_dev *dev, pqc_dev_buffer *buf)
{
    pqc_dev_buffer *b;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    b = pqc_host_find_buffer(dev, buf);
    if (b != NULL) {
        unlink_buffer(dev, b);
        b->freed = 1;
        if (b->uses == 0) {
            release_buffer(dev, b);
        }
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return b != NULL ? PQC_OK : PQC_ERR_INVALID_ARG;
}

int pqc_dev_buffer_size(pqc_dev *dev, const pqc_dev_buffer *buf, size_t *size)
{
    pqc_dev_buffer *b;

    if (size == NULL || pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    b = pqc_host_find_buffer(dev, buf);
    if (b != NULL) {
        *size = b->size;
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return b != NULL ? PQC_OK : PQC_ERR_INVALID_ARG;
}

/* ---- Key slots ----------------------------------------------------- */

static void release_slot(pqc_dev *dev, uint32_t id)
{
    pqc_host_slot *slot = dev->slots[id];

    pqc_host_wipe(slot->key, slot->size);
    free(slot->key);
    free(slot);
    dev->slots[id] = NULL;
    dev->slots_used--;
}

void pqc_host_free_slots(pqc_dev *dev)
{
    for (uint32_t id = 0; id < PQC_HOST_MAX_KEY_SLOTS; id++) {
        if (dev->slots[id] != NULL) {
            release_slot(dev, id);
        }
    }
}

/* The expanded key in slot id if it is loaded for ps; NULL otherwise. */
const void *pqc_host_slot_acquire(pqc_dev *dev, uint32_t id, unsigned ps)
{
    pqc_host_slot *slot;

    if (id >= PQC_HOST_MAX_KEY_SLOTS) {
        return NULL;
    }
    slot = dev->slots[id];
    if (slot == NULL || slot->freed || slot->ps != ps) {
        return NULL;
    }
    slot->refs++;
    return slot->key;
}

void pqc_host_slot_release(pqc_dev *dev, uint32_t id)
{
    pqc_host_slot *slot = dev->slots[id];

    if (--slot->refs == 0 && slot->freed) {
        release_slot(dev, id);
    }
}

/* Put an expanded key into the lowest free slot number. */
static int install(pqc_dev *dev, pqc_host_slot *slot, uint32_t *id)
{
    if (dev->closing) {
        return PQC_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < PQC_HOST_MAX_KEY_SLOTS; i++) {
        if (dev->slots[i] == NULL) {
            dev->slots[i] = slot;
            dev->slots_used++;
            *id = i;
            return PQC_OK;
        }
    }
    return PQC_ERR_NO_MEMORY;
}

/* Expand sk (mldsa_sk_bytes(ps) bytes, checked) and install it. */
static int load_expanded(pqc_dev *dev, unsigned ps, const uint8_t *sk,
                         uint32_t *id)
{
    pqc_host_slot *slot = calloc(1, sizeof(*slot));
    int rc = PQC_ERR_NO_MEMORY;

    if (slot != NULL) {
        slot->ps = ps;
        slot->size = mldsa_expanded_sk_bytes(ps);
        slot->key = malloc(slot->size);
    }
    if (slot != NULL && slot->key != NULL) {
        rc = mldsa_expand_sk(ps, slot->key, sk);
    }
    if (rc == PQC_OK) {
        pthread_mutex_lock(&dev->lock);
        rc = install(dev, slot, id);
        pthread_mutex_unlock(&dev->lock);
    }
    if (rc != PQC_OK && slot != NULL) {
        pqc_host_wipe(slot->key, slot->key != NULL ? slot->size : 0);
        free(slot->key);
        free(slot);
    }
    return rc;
}

int pqc_dev_key_load_sk(pqc_dev *dev, unsigned ps, const uint8_t *sk,
                        size_t sk_len, uint32_t *slot)
{
    size_t want = mldsa_sk_bytes(ps);
    int rc;

    if (want == 0 || sk == NULL || slot == NULL) {
        return PQC_ERR_INVALID_ARG;
    }
    if (sk_len != want) {
        return PQC_ERR_INVALID_LENGTH;
    }
    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    rc = load_expanded(dev, ps, sk, slot);
    pqc_host_leave(dev);
    return rc;
}

/* FIPS 204, Algorithm 6 into heap scratch, then expand; sk is wiped. */
static int keygen_and_load(pqc_dev *dev, unsigned ps, const uint8_t *xi,
                           uint8_t *pk, uint32_t *slot)
{
    size_t pk_bytes = mldsa_pk_bytes(ps);
    size_t sk_bytes = mldsa_sk_bytes(ps);
    uint8_t *scratch = malloc(pk_bytes + sk_bytes);
    int rc;

    if (scratch == NULL) {
        return PQC_ERR_NO_MEMORY;
    }
    rc = mldsa_keygen(ps, scratch, scratch + pk_bytes, xi);
    if (rc == PQC_OK) {
        rc = load_expanded(dev, ps, scratch + pk_bytes, slot);
    }
    if (rc == PQC_OK && pk != NULL) {
        memcpy(pk, scratch, pk_bytes);
    }
    pqc_host_wipe(scratch, pk_bytes + sk_bytes);
    free(scratch);
    return rc;
}

int pqc_dev_key_load_seed(pqc_dev *dev, unsigned ps, const uint8_t *xi,
                          uint8_t *pk, size_t pk_len, uint32_t *slot)
{
    size_t want = mldsa_pk_bytes(ps);
    int rc;

    if (want == 0 || xi == NULL || slot == NULL || (pk == NULL && pk_len)) {
        return PQC_ERR_INVALID_ARG;
    }
    if (pk != NULL && pk_len != want) {
        return PQC_ERR_INVALID_LENGTH;
    }
    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    rc = keygen_and_load(dev, ps, xi, pk, slot);
    pqc_host_leave(dev);
    return rc;
}

int pqc_dev_key_free(pqc_dev *dev, uint32_t id)
{
    pqc_host_slot *slot = NULL;

    if (pqc_host_enter(dev) != PQC_OK) {
        return PQC_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&dev->lock);
    if (id < PQC_HOST_MAX_KEY_SLOTS) {
        slot = dev->slots[id];
    }
    if (slot != NULL && !slot->freed) {
        slot->freed = 1;
        if (slot->refs == 0) {
            release_slot(dev, id);
        }
    } else {
        slot = NULL;
    }
    pthread_mutex_unlock(&dev->lock);
    pqc_host_leave(dev);
    return slot != NULL ? PQC_OK : PQC_ERR_INVALID_ARG;
}
