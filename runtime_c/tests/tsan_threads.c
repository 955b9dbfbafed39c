/*
 * tsan_threads.c -- one loaded model run from 8 caller threads at once (built by `make tsan`
 * under -fsanitize=thread; not a test_*.c, so `make test` does not pick it up).
 *
 *   tsan_threads MODEL.cz [ITERATIONS]
 *
 * The model's first input is fed 8 different deterministic tensors (symbolic dims = 4);
 * reference outputs are computed sequentially first, then 8 threads each run their input
 * ITERATIONS times concurrently on the SAME cz_model and compare every output bit for bit.
 * cz_options.threads = 1: each cz_run is single-threaded inside (OpenMP runtimes are not
 * TSan-instrumented and would report false positives), the concurrency is between callers.
 * Exit status 0 only when every output matched (TSan itself reports races, and with
 * halt_on_error=1 exits non-zero).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz.h"

#define NT 8
#define MAX_OUT 8

static cz_model *g_model;
static int g_iters = 20, g_nout;
static cz_tensor g_in[NT];
static void *g_ref[NT][MAX_OUT];
static size_t g_ref_bytes[NT][MAX_OUT];
static int g_mismatch[NT];

static int run(int who, void **outs, size_t *bytes) {
    cz_tensor out[MAX_OUT];
    memset(out, 0, sizeof out);
    char err[256];
    cz_status st = cz_run(g_model, &g_in[who], 1, out, g_nout, err, sizeof err);
    if (st != CZ_OK) {
        fprintf(stderr, "cz_run: %s: %s\n", cz_status_name(st), err);
        return 0;
    }
    for (int j = 0; j < g_nout; j++) { outs[j] = out[j].data; bytes[j] = out[j].bytes; }
    return 1;
}

static void *worker(void *arg) {
    int who = (int)(size_t)arg;
    for (int it = 0; it < g_iters; it++) {
        void *outs[MAX_OUT];
        size_t bytes[MAX_OUT];
        if (!run(who, outs, bytes)) { g_mismatch[who]++; continue; }
        for (int j = 0; j < g_nout; j++) {
            if (bytes[j] != g_ref_bytes[who][j] || memcmp(outs[j], g_ref[who][j], bytes[j]))
                g_mismatch[who]++;
            cz_free(g_model, outs[j]);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.cz [ITERATIONS]\n", argv[0]); return 2; }
    if (argc > 2) g_iters = atoi(argv[2]);
    cz_options o = {0};
    o.threads = 1;
    char err[256];
    if (cz_open_file(argv[1], &o, &g_model, err, sizeof err) != CZ_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    g_nout = cz_output_count(g_model);
    if (cz_input_count(g_model) != 1 || g_nout < 1 || g_nout > MAX_OUT) {
        fprintf(stderr, "need a model with one input and 1..%d outputs\n", MAX_OUT);
        return 1;
    }
    cz_info info;
    cz_input_info(g_model, 0, &info);
    if (info.dtype != CZ_F32) { fprintf(stderr, "need an f32 input\n"); return 1; }
    size_t elems = 1;
    for (int k = 0; k < info.ndim; k++) elems *= (size_t)(info.shape[k] < 0 ? 4 : info.shape[k]);
    for (int t = 0; t < NT; t++) {
        cz_tensor *x = &g_in[t];
        x->name = info.name;
        x->dtype = CZ_F32;
        x->ndim = info.ndim;
        for (int k = 0; k < info.ndim; k++) x->shape[k] = info.shape[k] < 0 ? 4 : info.shape[k];
        x->bytes = elems * sizeof(float);
        float *p = malloc(x->bytes);
        for (size_t e = 0; e < elems; e++) p[e] = (float)((int)((e * 7 + (size_t)t * 13) % 19) - 9) / 8.0f;
        x->data = p;
        if (!run(t, g_ref[t], g_ref_bytes[t])) return 1;      /* sequential reference */
    }
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) pthread_create(&th[t], NULL, worker, (void *)(size_t)t);
    int bad = 0;
    for (int t = 0; t < NT; t++) { pthread_join(th[t], NULL); bad += g_mismatch[t]; }
    printf("tsan_threads: %d threads x %d runs on one model, %d mismatches against the "
           "sequential outputs\n", NT, g_iters, bad);
    for (int t = 0; t < NT; t++) {
        for (int j = 0; j < g_nout; j++) cz_free(g_model, g_ref[t][j]);
        free(g_in[t].data);
    }
    cz_close(g_model);
    return bad ? 1 : 0;
}
