/*
 * bench_run.c -- whole-model latency in C alone: cz_run in a loop on one model (no Python,
 * no binding), so the C time can be set against the time of the same call made through
 * the Python binding (bench/models.py, CModel.run).
 *
 *   cc -O2 -Iinclude -Isrc bench/bench_run.c build/libcz.a -lzstd -lm -fopenmp -o build/bench_run
 *   build/bench_run MODEL.cz [--threads T] [--rounds R] [--shape d0,d1,...] [--outbuf]
 *
 * Every graph input gets random float data of its declared shape (symbolic dims -> 1, or
 * --shape for the first input). One "sample" runs cz_run back to back for >= 200 us; the
 * median and the minimum over R samples (default 201) are printed in microseconds per call.
 * --outbuf passes caller-owned output buffers (what the Python binding does for small
 * outputs); without it cz_run allocates the outputs and they are freed with cz_free.
 * With CZ_PROFILE=1 in the environment the runtime also prints the time per op type at exit,
 * with CZ_PROFILE=2 the time per node too (median and minimum over runs), e.g.
 *   CZ_PROFILE=2 build/bench_run /tmp/czbench_models/mlp.cz --outbuf
 * whose "in nodes" total set against cz_run's time is the executor's own per-call cost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cz.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.cz [--threads T] [--rounds R] [--shape d0,d1,..] [--outbuf]\n",
                argv[0]);
        return 2;
    }
    int threads = 1, rounds = 201, outbuf = 0;
    const char *shape_arg = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape_arg = argv[++i];
        else if (!strcmp(argv[i], "--outbuf")) outbuf = 1;
    }
    char err[512];
    cz_options o = {.threads = threads};
    cz_model *m;
    if (cz_open_file(argv[1], &o, &m, err, sizeof err)) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    int ni = cz_input_count(m), no = cz_output_count(m);
    cz_tensor *in = calloc((size_t)ni + 1, sizeof *in), *out = calloc((size_t)no + 1, sizeof *out);
    srand(1);
    for (int i = 0; i < ni; i++) {
        cz_info inf;
        cz_input_info(m, i, &inf);
        in[i].name = inf.name;
        in[i].dtype = inf.dtype;
        in[i].ndim = inf.ndim;
        size_t n = 1;
        for (int k = 0; k < inf.ndim; k++) {
            int64_t d = inf.shape[k] < 0 ? 1 : inf.shape[k];
            in[i].shape[k] = d;
        }
        if (i == 0 && shape_arg) {
            int k = 0;
            for (const char *s = shape_arg; *s && k < CZ_MAX_NDIM; k++) {
                in[i].shape[k] = strtoll(s, (char **)&s, 10);
                if (*s == ',') s++;
            }
            in[i].ndim = k;
        }
        for (int k = 0; k < in[i].ndim; k++) n *= (size_t)in[i].shape[k];
        size_t es = cz_dtype_size(inf.dtype);
        in[i].bytes = n * es;
        in[i].data = calloc(n + 1, es);
        if (inf.dtype == CZ_F32)
            for (size_t k = 0; k < n; k++) ((float *)in[i].data)[k] = (float)rand() / RAND_MAX - 0.5f;
    }
    /* one call to learn the output sizes */
    if (cz_run(m, in, ni, out, no, err, sizeof err)) {
        fprintf(stderr, "run: %s\n", err);
        return 1;
    }
    void **keep = calloc((size_t)no + 1, sizeof *keep);
    for (int j = 0; j < no; j++) {
        if (outbuf) keep[j] = out[j].data;   /* reused as the caller's buffer */
        else cz_free(m, out[j].data);
    }
    double *t = calloc((size_t)rounds, sizeof *t);
    for (int r = -rounds / 10 - 1; r < rounds; r++) {
        int n = 0;
        double t0 = now(), el;
        do {
            for (int j = 0; j < no; j++) {
                out[j].name = NULL;
                out[j].data = outbuf ? keep[j] : NULL;
            }
            if (cz_run(m, in, ni, out, no, err, sizeof err)) {
                fprintf(stderr, "run: %s\n", err);
                return 1;
            }
            if (!outbuf)
                for (int j = 0; j < no; j++) cz_free(m, out[j].data);
            n++;
            el = now() - t0;
        } while (el < 200e-6);
        if (r >= 0) t[r] = el / n * 1e6;
    }
    qsort(t, (size_t)rounds, sizeof *t, cmpd);
    printf("cz_run %s threads=%d%s: median %.2f us  min %.2f us  (%d samples)\n", argv[1], threads,
           outbuf ? " outbuf" : "", t[rounds / 2], t[0], rounds);
    for (int j = 0; j < no; j++)
        if (outbuf) cz_free(m, keep[j]);
    for (int i = 0; i < ni; i++) free(in[i].data);
    free(in);
    free(out);
    free(keep);
    free(t);
    cz_close(m);
    return 0;
}
