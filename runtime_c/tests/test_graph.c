/*
 * test_graph.c -- the graph executor through the public API (cz.h): graph input/output info,
 * cz_run on the golden vector that carries a graph (Linear: y = x w^T), caller/allocated
 * output buffers, feed errors, concurrent runs, and byte-flip fuzzing of that file (every
 * variant, header re-checksummed, either fails to open with a status or opens and runs or
 * fails cleanly); and the executor's vector loops (ops_vec.h: MaxPool 2x2, Relu, Softmax
 * rows with -inf) on every ISA level against scalar references.
 *
 *   test_graph VECTORS_DIR EXPECTED_DIR [--fuzz N]
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz.h"
#include "kernels/kint.h"   /* czk_set_feature_mask: every ISA path of the loops below */
#include "ops_vec.h"        /* the executor's vectorised loops, tested directly */

static int checks, failures;
#define CHECK(c, ...)                                                     \
    do {                                                                  \
        checks++;                                                         \
        if (!(c)) {                                                       \
            failures++;                                                   \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #c);  \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

/* zlib crc32 semantics: continue from `crc` (0 to start) */
static uint32_t crc32_bytes(uint32_t crc, const unsigned char *p, size_t n) {
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

typedef struct {
    const cz_model *m;
    const float *x;
    int n;
    float *y;
    cz_status st;
} job;

static cz_status run1(const cz_model *m, const float *x, int n, float *y, size_t ybytes,
                      char *err) {
    cz_tensor in = {"input", CZ_F32, 2, {n, 4}, (void *)x, (size_t)n * 16};
    cz_tensor out = {"y", CZ_F32, 0, {0}, y, ybytes};
    return cz_run(m, &in, 1, &out, 1, err, 256);
}

static void *thread_main(void *p) {
    job *j = p;
    char err[256];
    for (int r = 0; r < 20 && j->st == CZ_OK; r++)
        j->st = run1(j->m, j->x, j->n, j->y, (size_t)j->n * 12, err);
    return NULL;
}

static void test_linear_vector(const char *vectors) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/valid/metadata_graph_calibration.cz", vectors);
    cz_options opt = {.threads = 2};
    cz_model *m = NULL;
    cz_status st = cz_open_file(path, &opt, &m, err, sizeof err);
    CHECK(st == CZ_OK, "open %s: %s", path, err);
    if (st) return;
    CHECK(cz_input_count(m) == 1 && cz_output_count(m) == 1, "io counts");
    cz_info info;
    CHECK(cz_input_info(m, 0, &info) == CZ_OK && strcmp(info.name, "input") == 0 &&
              info.ndim == 2 && info.shape[0] == -1 && info.shape[1] == 4 &&
              info.dtype == CZ_F32, "input info");
    CHECK(cz_output_info(m, 0, &info) == CZ_OK && strcmp(info.name, "y") == 0 &&
              info.shape[0] == -1 && info.shape[1] == 3, "output info");
    CHECK(cz_input_info(m, 1, &info) == CZ_ERR_PARAM, "input info out of range");
    float w[12], x[5 * 4], want[5 * 3], y[5 * 3];
    CHECK(cz_tensor_read(m, "w", w, sizeof w, err, sizeof err) == CZ_OK, "read w: %s", err);
    for (int i = 0; i < 20; i++) x[i] = (float)(i % 7) - 2.5f + 0.25f * (float)i;
    for (int b = 0; b < 5; b++)
        for (int r = 0; r < 3; r++) {
            double s = 0;
            for (int c = 0; c < 4; c++) s += (double)x[b * 4 + c] * w[r * 4 + c];
            want[b * 3 + r] = (float)s;
        }
    /* caller buffer */
    st = run1(m, x, 5, y, sizeof y, err);
    CHECK(st == CZ_OK, "run: %s", err);
    for (int i = 0; i < 15; i++)
        CHECK(fabsf(y[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])), "y[%d] %g vs %g", i, y[i],
              want[i]);
    /* allocated output, selected by position (name NULL) */
    cz_tensor in = {"input", CZ_F32, 2, {5, 4}, x, sizeof x};
    cz_tensor out;
    memset(&out, 0, sizeof out);
    st = cz_run(m, &in, 1, &out, 1, err, sizeof err);
    CHECK(st == CZ_OK && out.data && out.ndim == 2 && out.shape[0] == 5 && out.shape[1] == 3 &&
              out.bytes == 60 && strcmp(out.name, "y") == 0, "allocated output: %s", err);
    if (!st) CHECK(memcmp(out.data, y, 60) == 0, "same result");
    cz_free(m, out.data);
    /* zero rows */
    memset(&out, 0, sizeof out);
    in.shape[0] = 0;
    in.bytes = 0;
    st = cz_run(m, &in, 1, &out, 1, err, sizeof err);
    CHECK(st == CZ_OK && out.shape[0] == 0 && out.bytes == 0, "empty batch: %s", err);
    cz_free(m, out.data);
    /* errors */
    CHECK(run1(m, x, 5, y, 59, err) == CZ_ERR_PARAM, "small output buffer");
    out = (cz_tensor){"nope", CZ_F32, 0, {0}, NULL, 0};
    in = (cz_tensor){"input", CZ_F32, 2, {5, 4}, x, sizeof x};
    CHECK(cz_run(m, &in, 1, &out, 1, err, sizeof err) == CZ_ERR_NOT_FOUND, "unknown output");
    out.name = NULL;
    CHECK(cz_run(m, &in, 0, &out, 1, err, sizeof err) == CZ_ERR_PARAM &&
              strstr(err, "missing input"), "missing input: %s", err);
    cz_tensor bad = in;
    bad.name = "inp";
    CHECK(cz_run(m, &bad, 1, &out, 1, err, sizeof err) == CZ_ERR_NOT_FOUND, "unknown input");
    bad = in;
    bad.dtype = CZ_F64;
    CHECK(cz_run(m, &bad, 1, &out, 1, err, sizeof err) == CZ_ERR_PARAM, "dtype");
    bad = in;
    bad.ndim = 3;
    bad.shape[2] = 1;
    CHECK(cz_run(m, &bad, 1, &out, 1, err, sizeof err) == CZ_ERR_PARAM, "rank");
    bad = in;
    bad.shape[1] = 5;
    CHECK(cz_run(m, &bad, 1, &out, 1, err, sizeof err) == CZ_ERR_SHAPE, "static dim");
    bad = in;
    bad.bytes = 10;
    CHECK(cz_run(m, &bad, 1, &out, 1, err, sizeof err) == CZ_ERR_PARAM, "short input buffer");
    bad = in;
    bad.shape[0] = (int64_t)1 << 62;
    CHECK(cz_run(m, &bad, 1, &out, 1, err, sizeof err) != CZ_OK, "huge dim");
    cz_tensor two[2] = {in, in};
    CHECK(cz_run(m, two, 2, &out, 1, err, sizeof err) == CZ_ERR_PARAM, "input twice");
    CHECK(cz_run(NULL, &in, 1, &out, 1, err, sizeof err) == CZ_ERR_PARAM, "NULL model");
    CHECK(cz_run(m, &in, 1, NULL, 1, err, sizeof err) == CZ_ERR_PARAM, "NULL outputs");
    CHECK(cz_run(m, &in, 1, &out, 0, NULL, 0) == CZ_OK, "no outputs requested, no err buf");
    /* concurrent runs on one model */
    enum { T = 4 };
    pthread_t th[T];
    job jobs[T];
    float ys[T][5 * 3];
    for (int t = 0; t < T; t++) {
        jobs[t] = (job){m, x, 5, ys[t], CZ_OK};
        pthread_create(&th[t], NULL, thread_main, &jobs[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        CHECK(jobs[t].st == CZ_OK && memcmp(ys[t], y, sizeof y) == 0, "thread %d", t);
    }
    cz_close(m);
}

static void test_no_graph(const char *vectors) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/valid/dense_dtypes.cz", vectors);
    cz_model *m = NULL;
    if (cz_open_file(path, NULL, &m, err, sizeof err) != CZ_OK) return;
    CHECK(cz_input_count(m) == 0 && cz_output_count(m) == 0, "weights-only file");
    cz_info info;
    CHECK(cz_output_info(m, 0, &info) == CZ_ERR_PARAM, "no output info");
    cz_tensor out;
    memset(&out, 0, sizeof out);
    CHECK(cz_run(m, NULL, 0, &out, 1, err, sizeof err) == CZ_ERR_PARAM, "run without graph");
    cz_close(m);
}

static void fuzz(const char *vectors, int n) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/valid/metadata_graph_calibration.cz", vectors);
    size_t size;
    unsigned char *orig = read_all(path, &size);
    CHECK(orig != NULL, "read %s", path);
    if (!orig) return;
    unsigned char *buf = malloc(size);
    uint32_t hlen = (uint32_t)orig[12] | (uint32_t)orig[13] << 8 | (uint32_t)orig[14] << 16 |
                    (uint32_t)orig[15] << 24;
    size_t span = 24 + (size_t)hlen <= size ? 24 + (size_t)hlen : size;
    unsigned rng = 12345;
    int opened = 0, ran = 0;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int it = 0; it < n; it++) {
        memcpy(buf, orig, size);
        int flips = 1 + (int)(rng % 3);
        for (int k = 0; k < flips; k++) {
            rng = rng * 1103515245u + 12345u;
            size_t pos = 24 + (rng >> 8) % (span > 24 ? span - 24 : 1);
            rng = rng * 1103515245u + 12345u;
            buf[pos] ^= (unsigned char)(1u << ((rng >> 16) & 7));
        }
        /* re-checksum the header (CRC-32 of preamble bytes 0-15, then the header) so the
         * flips reach the header / graph parsers */
        uint32_t crc = crc32_bytes(crc32_bytes(0, buf, 16), buf + 24, span - 24);
        for (int k = 0; k < 4; k++) buf[16 + k] = (unsigned char)(crc >> (8 * k));
        cz_model *m = NULL;
        cz_status st = cz_open_memory(buf, size, NULL, &m, err, sizeof err);
        if (st != CZ_OK) {
            CHECK(m == NULL && err[0], "failed open leaves no model and a message");
            continue;
        }
        opened++;
        int ni = cz_input_count(m);
        cz_tensor in[4];
        cz_info info;
        int nin = 0;
        for (int i = 0; i < ni && nin < 4; i++) {
            if (cz_input_info(m, i, &info) != CZ_OK) continue;
            cz_tensor t = {info.name, info.dtype, info.ndim, {0}, x, sizeof x};
            size_t el = 1;
            for (int d = 0; d < info.ndim; d++) {
                t.shape[d] = info.shape[d] < 0 ? 2 : info.shape[d];
                el *= (size_t)t.shape[d];
            }
            if (el * cz_dtype_size(info.dtype) > sizeof x) continue;
            in[nin++] = t;
        }
        cz_tensor out[4];
        memset(out, 0, sizeof out);
        int no = cz_output_count(m) < 4 ? cz_output_count(m) : 4;
        if (no > 0 && cz_run(m, in, nin, out, no, err, sizeof err) == CZ_OK) {
            ran++;
            for (int j = 0; j < no; j++) cz_free(m, out[j].data);
        }
        cz_close(m);
    }
    printf("fuzz: %d variants, %d opened, %d ran\n", n, opened, ran);
    free(buf);
    free(orig);
}

/* ---- the executor's vector loops (ops_vec.h) on every ISA level vs scalar references ---- */

static int same_f(float a, float b) {   /* equal bits, or both NaN */
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    return ua == ub || (a != a && b != b);
}

static float special_val(unsigned r) {
    static const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -3e38f};
    return sp[r % (sizeof sp / sizeof sp[0])];
}

static void test_vec_loops(void) {
    static const struct { int mask; const char *name; } levels[] = {
        {0, "portable"}, {CZK_F_AVX2, "avx2"}, {-1, "all"}};
    unsigned seed = 12345;
#define RND() (seed = seed * 1103515245u + 12345u, (seed >> 8) & 0xffffff)
    for (int l = 0; l < 3; l++) {
        if (levels[l].mask > 0 && (czk_cpu_features() & levels[l].mask) != levels[l].mask)
            continue;
        czk_set_feature_mask(levels[l].mask);
        /* MaxPool 2x2 / stride 2: output widths through the 8-, 4- and 1-wide steps, odd
         * input sizes (the last row / column unused), NaN / inf / -0.0 in some windows */
        static const int dims[][2] = {{2, 2}, {3, 5}, {8, 16}, {9, 31}, {24, 24}, {5, 40}, {4, 2}};
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            size_t h = (size_t)dims[di][0], w = (size_t)dims[di][1], planes = 3;
            size_t oh = h / 2, ow = w / 2, n = planes * h * w;
            float *x = malloc(n * 4), *y = malloc(planes * oh * ow * 4 + 4),
                  *t = malloc((2 * ow + 16) * 4);
            for (size_t i = 0; i < n; i++) {
                unsigned r = RND();
                x[i] = r % 11 == 0 ? special_val(r / 11) : (float)((int)(r % 2001) - 1000) / 8;
            }
            czv_maxpool2x2(x, y, planes, h, w, oh, ow, t);
            int bad = 0;
            for (size_t p = 0; p < planes; p++)
                for (size_t oy = 0; oy < oh; oy++)
                    for (size_t ox = 0; ox < ow; ox++) {
                        const float *q = x + (p * h + 2 * oy) * w + 2 * ox;
                        float v[4] = {q[0], q[1], q[w], q[w + 1]}, m = v[0];
                        int nan = 0;
                        for (int k = 0; k < 4; k++) {
                            nan |= v[k] != v[k];
                            if (v[k] > m) m = v[k];
                        }
                        float got = y[(p * oh + oy) * ow + ox];
                        /* a tie of 0.0 and -0.0 may give either (as np.maximum) */
                        if (nan ? got == got : !(got == m)) bad++;
                    }
            CHECK(!bad, "maxpool2x2 %s %zux%zu: %d wrong outputs", levels[l].name, h, w, bad);
            /* relu: copy and in place, NaN and -0.0 kept */
            float *z = malloc(n * 4);
            czv_relu(x, z, n);
            bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += !same_f(z[i], x[i] < 0.0f ? 0.0f : x[i]);
            czv_relu(z, z, n);
            for (size_t i = 0; i < n; i++)
                bad += !same_f(z[i], x[i] < 0.0f ? 0.0f : x[i]);
            CHECK(!bad, "relu %s n=%zu: %d wrong", levels[l].name, n, bad);
            free(x);
            free(y);
            free(t);
            free(z);
        }
        /* softmax rows with -inf (masked attention) and scores far below the max: exactly
         * 0 there, in the 16-lane part and the tail; the rest vs double precision */
        for (size_t n = 1; n <= 53; n += 4) {
            float x[64], y[64];
            double e[64], s = 0, mx = -INFINITY;
            for (size_t i = 0; i < n; i++) {
                unsigned r = RND();
                x[i] = r % 3 == 0 ? -INFINITY : r % 7 == 0 ? -150.0f : (float)(r % 1000) / 100;
            }
            x[n / 2] = 1.0f;   /* one finite entry at least */
            for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
            for (size_t i = 0; i < n; i++) s += (e[i] = exp((double)x[i] - mx));
            czv_softmax_row(x, y, n);
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                double want = e[i] / s;
                if (x[i] == -INFINITY ? y[i] != 0.0f : fabs(y[i] - want) > 1e-6 + 1e-5 * want)
                    bad++;
            }
            CHECK(!bad, "softmax_row %s n=%zu: %d wrong", levels[l].name, n, bad);
        }
        /* fused scale + mask (czv_softmax_row_sb): the input rounded as Mul then Add would
         * (u = fl(fl(x s) + b)), then vs double; in place the same bits; masks of -inf,
         * -3.4e38 (HF's finfo.min) and -1e4; 16-lane part, 8-lane part and tails */
        double worst = 0;
        for (size_t n = 1; n <= 140; n += (n < 40 ? 3 : 31)) {
            float x[160], b[160], y[160], z[160];
            double e[160], s = 0, mx = -INFINITY;
            const float sc = 0.17677669f;
            for (size_t i = 0; i < n; i++) {
                unsigned r = RND();
                x[i] = (float)((int)(r % 4001) - 2000) / 40;
                b[i] = r % 5 == 0 ? -INFINITY : r % 7 == 0 ? -3.4028235e38f
                       : r % 11 == 0 ? -1e4f : 0.0f;
            }
            b[n - 1] = 0.0f;
            for (size_t i = 0; i < n; i++) {
                volatile float t = x[i] * sc;
                float u = t + b[i];
                e[i] = u;
                mx = u > mx ? u : mx;
            }
            for (size_t i = 0; i < n; i++) s += (e[i] = exp(e[i] - mx));
            czv_softmax_row_sb(x, y, n, sc, b);
            memcpy(z, x, sizeof x);
            czv_softmax_row_sb(z, z, n, sc, b);
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                double want = e[i] / s;
                if (b[i] == -INFINITY || b[i] < -1e30f ? y[i] != 0.0f
                                                      : fabs(y[i] - want) > 1e-6 + 1e-5 * want)
                    bad++;
                if (want > 1e-30) worst = fmax(worst, fabs(y[i] - want) / want);
                bad += !same_f(y[i], z[i]);
            }
            CHECK(!bad, "softmax_row_sb %s n=%zu: %d wrong", levels[l].name, n, bad);
        }
        /* relative error vs double: 1.1e-6 measured here; bound by the f32 rounding of
         * u - max (|u - max| < 87.3: half an ulp is 3.8e-6 relative after exp), the rest
         * (exp's polynomial, the sum, 1 / sum) a few e-7 */
        CHECK(worst < 5e-6, "softmax_row_sb %s: relative error %.3g", levels[l].name, worst);
        /* Gelu (exact form) vs double over [-14, 8]: the elementwise tolerance everywhere,
         * and the far left tail (the f32 erfc of gelu_tail_avx2i, or the double erfc)
         * relative 3e-5 where Gelu is above 1e-30 (measured 1.2e-5 at x = -14: the f32
         * rounding of z = -x / sqrt 2 grows with z^2; |Gelu| < 0.016 there) */
        {
            enum { NG = 2203 };
            float *gx = malloc(NG * 4), *gy = malloc(NG * 4);
            for (int i = 0; i < NG; i++) gx[i] = -14.0f + 22.0f * (float)i / NG;
            czv_gelu_erf(gx, gy, NG);
            int bad = 0;
            double tw = 0;
            for (int i = 0; i < NG; i++) {
                double v = gx[i], want = 0.5 * v * erfc(-v / sqrt(2.0));
                if (fabs(gy[i] - want) > 1e-6 + 1e-5 * fabs(want)) bad++;
                if (v < -2.5 && fabs(want) > 1e-30) tw = fmax(tw, fabs(gy[i] - want) / fabs(want));
            }
            CHECK(!bad && tw < 3e-5, "gelu_erf %s: %d wrong, tail relative error %.3g",
                  levels[l].name, bad, tw);
            free(gx);
            free(gy);
        }
    }
#undef RND
    czk_set_feature_mask(-1);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_graph VECTORS_DIR [EXPECTED_DIR] [--fuzz N]\n");
        return 2;
    }
    int nfuzz = 500;
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], "--fuzz") == 0) nfuzz = atoi(argv[i + 1]);
    test_vec_loops();
    test_linear_vector(argv[1]);
    test_no_graph(argv[1]);
    fuzz(argv[1], nfuzz);
    printf("test_graph: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
