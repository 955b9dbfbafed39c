/* alloc.c -- default aligned allocator, cz_mem_*, bump arena. */
#include <stdlib.h>
#include <string.h>

#include "cz_internal.h"

static void *default_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (align & (align - 1)) return NULL;
    if (size == 0) size = 1;
    if (size > SIZE_MAX - align) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0) return NULL;
    return p;
}

static void default_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

static const cz_allocator g_default = {default_alloc, default_free, NULL};

const cz_allocator *cz_default_allocator(void) { return &g_default; }

void *cz_mem_alloc(const cz_allocator *a, size_t size, size_t align) {
    if (!a) a = &g_default;
    if (align == 0) align = 16;
    if ((align & (align - 1)) || align > 64) return NULL;
    if (size == 0) size = 1;
    return a->alloc(a->ctx, size, align);
}

void cz_mem_free(const cz_allocator *a, void *p) {
    if (!p) return;
    if (!a) a = &g_default;
    a->free(a->ctx, p);
}

/* ---- arena ------------------------------------------------------------------------- */

struct cz_arena_block {
    cz_arena_block *next;
    size_t size, pos;          /* bytes usable after the header, bytes used */
    /* data follows, 64-byte aligned */
};

#define ARENA_HDR 64u
#define ARENA_MIN_BLOCK (64u * 1024u)

void cz_arena_init(cz_arena *ar, const cz_allocator *a, uint64_t cap) {
    ar->a = a;
    ar->head = NULL;
    ar->used = 0;
    ar->cap = cap;
}

void *cz_arena_alloc(cz_arena *ar, size_t size, size_t align) {
    if (align == 0) align = 8;
    if ((align & (align - 1)) || align > 64) return NULL;
    if (size == 0) size = 1;
    cz_arena_block *b = ar->head;
    if (b) {
        size_t pos = (b->pos + align - 1) & ~(align - 1);
        if (pos <= b->size && size <= b->size - pos) {
            b->pos = pos + size;
            return (uint8_t *)b + ARENA_HDR + pos;
        }
    }
    size_t want = size < ARENA_MIN_BLOCK ? ARENA_MIN_BLOCK : size;
    if (want > SIZE_MAX - ARENA_HDR) return NULL;
    uint64_t used;
    if (!cz_add_ok(ar->used, (uint64_t)want + ARENA_HDR, &used)) return NULL;
    if (ar->cap && used > ar->cap) {
        /* a smaller block may still fit the cap */
        want = size;
        if (!cz_add_ok(ar->used, (uint64_t)want + ARENA_HDR, &used) || used > ar->cap)
            return NULL;
    }
    cz_arena_block *nb = cz_mem_alloc(ar->a, want + ARENA_HDR, 64);
    if (!nb) return NULL;
    nb->size = want;
    nb->pos = size;
    ar->used = used;
    /* keep the block with more free space at the head */
    if (b && want - size < b->size - b->pos) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        ar->head = nb;
    }
    return (uint8_t *)nb + ARENA_HDR;
}

void cz_arena_free_all(cz_arena *ar) {
    cz_arena_block *b = ar->head;
    while (b) {
        cz_arena_block *n = b->next;
        cz_mem_free(ar->a, b);
        b = n;
    }
    ar->head = NULL;
    ar->used = 0;
}

void cz_arena_reset(cz_arena *ar, size_t keep_max) {
    cz_arena_block *keep = NULL;
    for (cz_arena_block *b = ar->head; b; b = b->next)
        if (b->size <= keep_max && (!keep || b->size > keep->size)) keep = b;
    cz_arena_block *b = ar->head;
    while (b) {
        cz_arena_block *n = b->next;
        if (b != keep) cz_mem_free(ar->a, b);
        b = n;
    }
    ar->head = keep;
    ar->used = 0;
    if (keep) {
        keep->next = NULL;
        keep->pos = 0;
        ar->used = (uint64_t)keep->size + ARENA_HDR;
    }
}
