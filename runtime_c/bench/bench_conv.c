/*
 * bench_conv.c -- conv kernel timings in C alone, per weight form (dense fp32, int8 per-row
 * AFFINE, RELIDX 5/8-bit codebook at a given density), on the shapes of bench/kernels_c.py
 * and of LeNet-5. Reports the median and the minimum over interleaved rounds (the machine
 * may be shared: the minimum is the steadier number), and checks every result against
 * czk_conv2d_ref.
 *
 *   cd runtime_c && gcc -O2 -fopenmp -Iinclude -Isrc -o build/bench_conv bench/bench_conv.c
 *       src/kernels/[a-z]*.c src/alloc.c src/status.c -lm
 *   build/bench_conv [ROUNDS] [FILTER] [legacy]
 * With "legacy" every form also runs through czk_set_conv_legacy(1) (the im2col-tile
 * lowering the current paths replaced), interleaved in the same rounds: "form:B" columns.
 */
#define CZB_LIB 1
#include "bench_kernels.c"

#include <math.h>

static int cmpd2(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const char *name;
    int64_t n, c, h, w, oc, k, s, pad, g;
    double density;   /* RELIDX: fraction of weights kept */
} conv_case;

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 21;
    const char *filter = argc > 2 ? argv[2] : "";
    /* A/B: argv[3] = "legacy" (czk_set_conv_legacy: the im2col-tile lowering) or the NAME
     * of an environment switch; every form then runs both ways ("form" and "form:B") in
     * the same rounds */
    const char *ab = argc > 3 ? argv[3] : NULL;
    static const conv_case cases[] = {
        {"lenet5 conv1 1->20 5x5 28x28", 1, 1, 28, 28, 20, 5, 1, 0, 1, 0.35},
        {"lenet5 conv2 20->50 5x5 12x12", 1, 20, 12, 12, 50, 5, 1, 0, 1, 0.35},
        {"64->64 3x3 56x56", 1, 64, 56, 56, 64, 3, 1, 1, 1, 0.35},
        {"depthwise 3x3 96ch 56x56", 1, 96, 56, 56, 96, 3, 1, 1, 96, 1.0},
        {"128->128 3x3 28x28 s1", 1, 128, 28, 28, 128, 3, 1, 1, 1, 0.35},
        {"64->128 3x3 56x56 s2", 1, 64, 56, 56, 128, 3, 2, 1, 1, 0.35},
        {"256->64 1x1 56x56", 1, 256, 56, 56, 64, 1, 1, 0, 1, 0.35},
    };
    uint64_t s = 777;
#define RND2() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, (float)((s >> 11) % 2000001) / 1e6f - 1.f)
    printf("features=%d  (median / min us over %d rounds; ERR: max |ours - ref| / max |ref| > 1e-5)\n",
           czk_cpu_features(), rounds);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const conv_case *cc = &cases[ci];
        if (*filter && !strstr(cc->name, filter)) continue;
        int64_t cg = cc->c / cc->g, K = cg * cc->k * cc->k, R = cc->oc;
        int64_t oh = (cc->h + 2 * cc->pad - cc->k) / cc->s + 1, ow = (cc->w + 2 * cc->pad - cc->k) / cc->s + 1;
        int64_t pv[18] = {cc->n, cc->c, cc->h, cc->w, cc->oc, cc->k, cc->k, cc->g, cc->s, cc->s, 1, 1,
                          cc->pad, cc->pad, cc->pad, cc->pad, oh, ow};
        czk_conv_params p = {pv[0], pv[1], pv[2], pv[3], pv[4], pv[5], pv[6], pv[7], pv[8], pv[9],
                             pv[10], pv[11], pv[12], pv[13], pv[14], pv[15], pv[16], pv[17]};
        float *w = malloc(R * K * 4), *lut = malloc(256 * 4), *sc = malloc(R * 4), *b = malloc(R * 4);
        int16_t *idx = malloc(R * K * 2);
        int8_t *q = malloc(R * K);
        float *ws = malloc(R * K * 4);   /* the relidx weights, dense */
        for (int i = 0; i < 256; i++) lut[i] = RND2() / sqrtf((float)K);
        for (int64_t r = 0; r < R; r++) {
            float mx = 0.f;
            for (int64_t c = 0; c < K; c++) {
                w[r * K + c] = RND2() / sqrtf((float)K);
                if (fabsf(w[r * K + c]) > mx) mx = fabsf(w[r * K + c]);
            }
            sc[r] = mx / 127.f;
            for (int64_t c = 0; c < K; c++) q[r * K + c] = (int8_t)lrintf(w[r * K + c] / sc[r]);
            b[r] = RND2() * 0.1f;
        }
        for (int64_t i = 0; i < R * K; i++) {
            idx[i] = (RND2() + 1.f) * 0.5f < cc->density ? (int16_t)((s >> 20) % 256) : -1;
            ws[i] = idx[i] < 0 ? 0.f : lut[idx[i]];
        }
        cz_form *fd = czb_form_dense(R, K, w), *fa = czb_form_affine_rows(R, K, q, sc),
                *fr = czb_form_relidx(R, K, idx, lut, 256, 8);
        czb_relidx_prepare(fr, 1);
        cz_form *forms[3] = {fd, fa, fr};
        const char *fn[3] = {"dense", "int8", "relidx"};
        int64_t nx = cc->n * cc->c * cc->h * cc->w, ny = cc->n * cc->oc * oh * ow;
        float *x = malloc(nx * 4), *y = malloc(ny * 4), *yr = malloc(ny * 4);
        for (int64_t i = 0; i < nx; i++) x[i] = RND2();
        int nf = cc->g > 1 ? 2 : 3;   /* relidx depthwise: not a case worth timing */
        /* slots: (form, B?) -- with an A/B switch every form runs both ways, interleaved */
        int sf[6], sb[6], ns = 0;
        for (int f = 0; f < nf; f++)
            for (int bb = 0; bb < (ab ? 2 : 1); bb++) { sf[ns] = f; sb[ns] = bb; ns++; }
        double t[6][64];
#define SETAB(bb) do { if (ab) { if (!strcmp(ab, "legacy")) czk_set_conv_legacy(bb); \
                                 else if (bb) setenv(ab, "1", 1); else unsetenv(ab); } } while (0)
        for (int i = 0; i < ns; i++) { SETAB(sb[i]); czb_time_conv(forms[sf[i]], pv, x, b, y, 1, 0.005); }
        int nr = rounds < 64 ? rounds : 64;
        for (int r = 0; r < nr; r++)
            for (int i = 0; i < ns; i++) {
                SETAB(sb[i]);
                t[i][r] = czb_time_conv(forms[sf[i]], pv, x, b, y, 1, 200e-6);
            }
        printf("%-30s", cc->name);
        for (int i = 0; i < ns; i++) {
            int f = sf[i];
            qsort(t[i], nr, sizeof(double), cmpd2);
            SETAB(sb[i]);
            czb_conv(forms[f], pv, x, b, y, 1);
            czk_conv2d_ref(forms[f], &p, x, b, yr);
            double e = 0, m = 0;
            for (int64_t k = 0; k < ny; k++) {
                if (fabs(y[k] - yr[k]) > e) e = fabs(y[k] - yr[k]);
                if (fabs(yr[k]) > m) m = fabs(yr[k]);
            }
            printf(" %s%s %7.1f/%7.1f%s", fn[f], sb[i] ? ":B" : "", t[i][nr / 2] * 1e6,
                   t[i][0] * 1e6, e / m > 1e-5 ? " ERR" : "");
        }
        SETAB(0);
        printf("\n");
        free(w); free(lut); free(sc); free(b); free(idx); free(q); free(ws); free(x); free(y); free(yr);
    }
    return 0;
}
