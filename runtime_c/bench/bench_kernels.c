/*
 * bench_kernels.c -- kernel microbenchmark.
 *
 * Two uses:
 *   - standalone (build/bench_kernels, tests/build_kernels.sh bench): random weights, our
 *     kernels only, prints a table;
 *   - shared library (-DCZB_LIB -shared, loaded by bench/kernels_c.py through cffi ABI mode)
 *     so Python can time numpy / scipy / ONNX Runtime INTERLEAVED with our kernels in the
 *     same process, on the same weights, and check our outputs.
 * Timing: one "timed batch" repeats the call until >= min_s (200 us) elapsed and returns
 * seconds per call; callers take the median over many batches after a warmup.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/kernels/kint.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- forms built from caller arrays (the caller keeps them alive) --------------------- */
cz_form *czb_form_dense(int64_t rows, int64_t cols, const float *w) {
    cz_form *f = calloc(1, sizeof *f);
    f->kind = CZ_FORM_DENSE; f->ndim = 2; f->shape[0] = rows; f->shape[1] = cols;
    f->rows = rows; f->cols = cols; f->u.dense.w = w;
    return f;
}
/* idx: rows x cols, -1 = zero, else a LUT index (< k) */
cz_form *czb_form_relidx(int64_t rows, int64_t cols, const int16_t *idx, const float *lut, int k,
                         int gap_bits) {
    cz_form *f = calloc(1, sizeof *f);
    f->kind = CZ_FORM_RELIDX; f->ndim = 2; f->shape[0] = rows; f->shape[1] = cols;
    f->rows = rows; f->cols = cols;
    unsigned M = (1u << gap_bits) - 1;
    uint8_t *gaps = malloc((size_t)(rows * cols + rows * (cols / M + 1) + 1));
    uint8_t *vi = malloc((size_t)(rows * cols + 1));
    int64_t *gp = malloc((size_t)(rows + 1) * 8), *vp = malloc((size_t)(rows + 1) * 8);
    int64_t ng = 0, nnz = 0;
    for (int64_t r = 0; r < rows; r++) {
        gp[r] = ng; vp[r] = nnz;
        int64_t p = 0;
        for (int64_t c = 0; c < cols; c++) {
            int v = idx[r * cols + c];
            if (v < 0) continue;
            int64_t gap = c - p;
            while (gap >= M) { gaps[ng++] = (uint8_t)M; gap -= M; }
            gaps[ng++] = (uint8_t)gap;
            vi[nnz++] = (uint8_t)v;
            p = c + 1;
        }
    }
    gp[rows] = ng; vp[rows] = nnz;
    f->u.relidx.gap_bits = gap_bits; f->u.relidx.gaps = gaps; f->u.relidx.gap_ptr = gp;
    f->u.relidx.val_ptr = vp; f->u.relidx.vkind = CZ_VALS_CODEBOOK; f->u.relidx.idx = vi;
    f->u.relidx.lut = lut; f->u.relidx.k = k;
    f->resident_bytes = (uint64_t)ng + (uint64_t)nnz + (uint64_t)(rows + 1) * 16 + (uint64_t)k * 4;
    return f;
}
/* derived u16 column cache; drop_gaps: then release the gap stream and gap_ptr (what the
 * format layer builds at open: val_ptr + col16 + values only) */
int czb_relidx_prepare(cz_form *f, int drop_gaps) {
    void *owned;
    cz_status st = czk_relidx_prepare(f, NULL, &owned);   /* leaked with the form (bench only) */
    if (st == CZ_OK && drop_gaps && f->relidx_col16) {
        int64_t ng = f->u.relidx.gap_ptr[f->rows];
        free((void *)f->u.relidx.gaps);
        free((void *)f->u.relidx.gap_ptr);
        f->u.relidx.gaps = NULL;
        f->u.relidx.gap_ptr = NULL;
        f->resident_bytes -= (uint64_t)ng + (uint64_t)(f->rows + 1) * 8;
    }
    return st;
}
cz_form *czb_form_affine_rows(int64_t rows, int64_t cols, const int8_t *q, const float *scale) {
    cz_form *f = calloc(1, sizeof *f);
    f->kind = CZ_FORM_AFFINE; f->ndim = 2; f->shape[0] = rows; f->shape[1] = cols;
    f->rows = rows; f->cols = cols;
    f->u.affine.q = q; f->u.affine.bits = 8; f->u.affine.scale = scale; f->u.affine.per_row = 1;
    return f;
}
/* int8 weights packed once for the int8 GEMM (what the graph does at load for the weights
 * of Linear / Gemm nodes); 0 when packed, else a status or -1 (path not used here) */
int czb_affine_prepare(cz_form *f) {
    void *owned;
    cz_status st = czk_affine_prepare(f, NULL, &owned);   /* leaked with the form (bench only) */
    return st ? (int)st : f->affine_p8 ? 0 : -1;
}
void czb_form_set_shape4(cz_form *f, int64_t a, int64_t b, int64_t c, int64_t d) {
    f->ndim = 4; f->shape[0] = a; f->shape[1] = b; f->shape[2] = c; f->shape[3] = d;
}

static cz_ws g_ws;
static int g_init = 0;
static void ws_init(int threads) {
    if (!g_init) { cz_arena_init(&g_ws.arena, NULL, 0); g_init = 1; }
    g_ws.threads = threads;
}

int czb_linear(const cz_form *f, int64_t batch, const float *x, float *y, int threads) {
    ws_init(threads);
    cz_status st = czk_linear(f, batch, x, f->cols, NULL, y, f->rows, &g_ws);
    /* as cz_run does at the end of a call (exec.c: the run cache keeps one arena block of
     * <= 16 MB for the next call, so big scratch is not re-faulted per call) */
    cz_arena_reset(&g_ws.arena, (size_t)16 << 20);
    return st;
}
double czb_time_linear(const cz_form *f, int64_t batch, const float *x, float *y, int threads,
                       double min_s) {
    double t0 = now(), t;
    long n = 0;
    do { czb_linear(f, batch, x, y, threads); n++; } while ((t = now()) - t0 < min_s);
    return (t - t0) / n;
}

int czb_conv(const cz_form *f, const int64_t *pv, const float *x, const float *bias, float *y,
             int threads) {
    czk_conv_params p = {pv[0], pv[1], pv[2], pv[3], pv[4], pv[5], pv[6], pv[7], pv[8], pv[9],
                         pv[10], pv[11], pv[12], pv[13], pv[14], pv[15], pv[16], pv[17]};
    ws_init(threads);
    cz_status st = czk_conv2d(f, &p, x, bias, y, &g_ws);
    cz_arena_reset(&g_ws.arena, (size_t)16 << 20);   /* (as czb_linear) */
    return st;
}
double czb_time_conv(const cz_form *f, const int64_t *pv, const float *x, const float *bias,
                     float *y, int threads, double min_s) {
    double t0 = now(), t;
    long n = 0;
    do { czb_conv(f, pv, x, bias, y, threads); n++; } while ((t = now()) - t0 < min_s);
    return (t - t0) / n;
}
int czb_features(void) { return czk_cpu_features(); }
void czb_set_mask(int m) { czk_set_feature_mask(m); }

#ifndef CZB_LIB
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static int g_use_min = 0;   /* argv[1] == "min": report the minimum (noisy shared machine) */
static double median_linear(const cz_form *f, int64_t b, const float *x, float *y) {
    double t[15];
    czb_time_linear(f, b, x, y, 1, 0.002);
    for (int i = 0; i < 15; i++) t[i] = czb_time_linear(f, b, x, y, 1, 200e-6);
    qsort(t, 15, sizeof(double), cmpd);
    return g_use_min ? t[0] : t[7];
}
int main(int argc, char **argv) {
    g_use_min = argc > 1 && !strcmp(argv[1], "min");
    static const int64_t shapes[][2] = {{300, 784}, {100, 300}, {1536, 384}, {384, 1536}, {4096, 4096}};
    uint64_t s = 12345;
#define RND() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, (float)((s >> 11) % 2000001) / 1e6f - 1.f)
    printf("features=%d\n%-12s %5s %12s %12s %12s\n", czk_cpu_features(), "shape", "batch",
           "dense_us", "relidx10%_us", "int8row_us");
    for (int si = 0; si < 5; si++) {
        int64_t R = shapes[si][0], C = shapes[si][1];
        float *w = malloc(R * C * 4), *lut = malloc(32 * 4), *sc = malloc(R * 4);
        int16_t *idx = malloc(R * C * 2);
        int8_t *q = malloc(R * C);
        for (int64_t i = 0; i < R * C; i++) {
            w[i] = RND();
            idx[i] = (RND() + 1.f) < 0.2f ? (int16_t)((s >> 20) % 32) : -1;
            q[i] = (int8_t)((s >> 24) % 255 - 127);
        }
        for (int i = 0; i < 32; i++) lut[i] = RND();
        for (int64_t i = 0; i < R; i++) sc[i] = 0.01f;
        cz_form *fd = czb_form_dense(R, C, w), *fr = czb_form_relidx(R, C, idx, lut, 32, 5),
                *fa = czb_form_affine_rows(R, C, q, sc);
        czb_relidx_prepare(fr, 1);
        for (int bi = 0; bi < 2; bi++) {
            int64_t B = bi ? 32 : 1;
            float *x = malloc(B * C * 4), *y = malloc(B * R * 4);
            for (int64_t i = 0; i < B * C; i++) x[i] = RND();
            printf("%5lldx%-6lld %5lld %12.1f %12.1f %12.1f\n", (long long)R, (long long)C,
                   (long long)B, median_linear(fd, B, x, y) * 1e6, median_linear(fr, B, x, y) * 1e6,
                   median_linear(fa, B, x, y) * 1e6);
            free(x); free(y);
        }
    }
    return 0;
}
#endif
