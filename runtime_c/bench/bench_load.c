/*
 * bench_load.c -- load-time microbenchmark: cz_open_file + cz_close of one .cz, repeated.
 *
 *   cc -O2 -Iinclude bench/bench_load.c build/libcz.a -lzstd -lm -fopenmp -o build/bench_load
 *   build/bench_load model.cz [repeats=15] [threads=1]
 *
 * Prints the median / min / max of the open time (cz_open_file to return, graph included)
 * and the close time in milliseconds, and the resident weight bytes. Meant for `perf record`
 * and for same-run comparisons of two builds (bench/models.py measures load time against
 * ONNX Runtime session creation in Python).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cz.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s model.cz [repeats] [threads]\n", argv[0]); return 2; }
    int n = argc > 2 ? atoi(argv[2]) : 15, th = argc > 3 ? atoi(argv[3]) : 1;
    if (n < 1) n = 1;
    double *t = malloc(sizeof(double) * (size_t)n), *tc = malloc(sizeof(double) * (size_t)n);
    char err[512];
    cz_options o = {0};
    o.threads = th;
    uint64_t res = 0;
    for (int i = 0; i < n; i++) {
        cz_model *m = NULL;
        double t0 = now();
        cz_status st = cz_open_file(argv[1], &o, &m, err, sizeof err);
        t[i] = now() - t0;
        if (st) { fprintf(stderr, "open: %s %s\n", cz_status_name(st), err); return 1; }
        if (i == 0) {
            for (int k = 0; k < cz_tensor_count(m); k++) {
                cz_info info;
                uint64_t rb = 0;
                if (cz_tensor_info(m, k, &info) == CZ_OK &&
                    cz_tensor_resident_bytes(m, info.name, &rb) == CZ_OK)
                    res += rb;
            }
        }
        t0 = now();
        cz_close(m);
        tc[i] = now() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmpd);
    qsort(tc, (size_t)n, sizeof *tc, cmpd);
    printf("open %.2f ms median (min %.2f, max %.2f)  close %.2f ms  resident %llu B  (%d repeats)\n",
           t[n / 2] * 1e3, t[0] * 1e3, t[n - 1] * 1e3, tc[n / 2] * 1e3, (unsigned long long)res, n);
    free(t); free(tc);
    return 0;
}
