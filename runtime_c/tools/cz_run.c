/*
 * cz_run -- run a .cz model on .npy inputs and write its outputs as .npy files.
 *
 *   cz_run MODEL.cz --input NAME=FILE.npy ... [-o OUTDIR] [--threads N] [--precise]
 *
 * Reads .npy v1/v2/v3 files (little-endian f4/f8/i8/i4/i2/i1/u1/u2/u4/b1/f2, C order) with a
 * strict header parser, runs the graph and writes OUTDIR/NAME.npy per output (v1 header).
 * Exit status: 0 ok, 1 bad model / input / run failure (message on stderr), 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz.h"

#define MAX_INPUTS 4096
#define NPY_MAX_HEADER (1u << 20)

static void usage(void) {
    fprintf(stderr,
            "usage: cz_run MODEL.cz --input NAME=FILE.npy ... [-o OUTDIR] [--threads N] "
            "[--precise]\n"
            "  runs the model's graph; writes OUTDIR/<output>.npy (OUTDIR default: .)\n"
            "  --precise: float products accumulate in double (cz_options.precise; slower)\n");
}

typedef struct {
    char *name;
    const char *path;
    cz_tensor t;
    void *buf;
} input_t;

static const struct { const char *descr; cz_dtype dt; } DESCR[] = {
    {"<f4", CZ_F32}, {"<f8", CZ_F64}, {"<f2", CZ_F16}, {"<i8", CZ_I64}, {"<i4", CZ_I32},
    {"<i2", CZ_I16}, {"|i1", CZ_I8}, {"|u1", CZ_U8}, {"<u2", CZ_U16}, {"<u4", CZ_U32},
    {"|b1", CZ_BOOL}, {"<i1", CZ_I8}, {"<u1", CZ_U8}, {"<b1", CZ_BOOL}};

static const char *descr_of(cz_dtype dt) {
    for (size_t i = 0; i < sizeof DESCR / sizeof DESCR[0]; i++)
        if (DESCR[i].dt == dt) return DESCR[i].descr;
    return NULL;
}

/* --- strict parser for the npy header dict: {'descr': '<f4', 'fortran_order': False,
 *     'shape': (2, 3), } with any key order and optional spaces / trailing comma --- */
typedef struct { const char *p, *end; } cur;

static void ws(cur *c) { while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++; }
static int lit(cur *c, const char *s) {
    size_t n = strlen(s);
    ws(c);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0) return 0;
    c->p += n;
    return 1;
}
static int str(cur *c, char *out, size_t cap) {
    ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (n + 1 >= cap || *c->p == '\\') return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[n] = 0;
    return 1;
}

static int parse_header(const char *h, size_t len, cz_dtype *dt, int *ndim, int64_t *shape,
                        char *why, size_t wl) {
    cur c = {h, h + len};
    int have_d = 0, have_f = 0, have_s = 0;
    if (!lit(&c, "{")) { snprintf(why, wl, "header is not a dict"); return 0; }
    for (;;) {
        if (lit(&c, "}")) break;
        char key[32];
        if (!str(&c, key, sizeof key) || !lit(&c, ":")) {
            snprintf(why, wl, "malformed header dict");
            return 0;
        }
        if (strcmp(key, "descr") == 0 && !have_d) {
            char d[16];
            if (!str(&c, d, sizeof d)) { snprintf(why, wl, "bad descr"); return 0; }
            int ok = 0;
            for (size_t i = 0; i < sizeof DESCR / sizeof DESCR[0]; i++)
                if (strcmp(DESCR[i].descr, d) == 0) { *dt = DESCR[i].dt; ok = 1; }
            if (!ok) {
                snprintf(why, wl, "unsupported dtype '%s' (little-endian f4/f8/f2/i8/i4/i2/i1/u1/"
                         "u2/u4/b1 only)", d);
                return 0;
            }
            have_d = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_f) {
            if (lit(&c, "True")) { snprintf(why, wl, "fortran_order arrays are not supported"); return 0; }
            if (!lit(&c, "False")) { snprintf(why, wl, "bad fortran_order"); return 0; }
            have_f = 1;
        } else if (strcmp(key, "shape") == 0 && !have_s) {
            if (!lit(&c, "(")) { snprintf(why, wl, "bad shape"); return 0; }
            *ndim = 0;
            for (;;) {
                if (lit(&c, ")")) break;
                ws(&c);
                int64_t v = 0;
                int digits = 0;
                while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
                    if (v > (INT64_C(1) << 40)) { snprintf(why, wl, "dim too large"); return 0; }
                    v = v * 10 + (*c.p++ - '0');
                    digits++;
                }
                if (!digits || *ndim >= CZ_MAX_NDIM) { snprintf(why, wl, "bad shape"); return 0; }
                shape[(*ndim)++] = v;
                if (lit(&c, ",")) continue;
                if (lit(&c, ")")) break;
                snprintf(why, wl, "bad shape");
                return 0;
            }
            have_s = 1;
        } else {
            snprintf(why, wl, "unexpected or repeated key '%s'", key);
            return 0;
        }
        if (lit(&c, ",")) continue;
        if (lit(&c, "}")) break;
        snprintf(why, wl, "malformed header dict");
        return 0;
    }
    ws(&c);
    while (c.p < c.end && *c.p == '\n') c.p++;
    ws(&c);
    if (c.p != c.end) { snprintf(why, wl, "trailing bytes in header"); return 0; }
    if (!have_d || !have_f || !have_s) { snprintf(why, wl, "header lacks descr/fortran_order/shape"); return 0; }
    return 1;
}

static int read_npy(const char *path, input_t *in, char *why, size_t wl) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(why, wl, "cannot open: %s", strerror(errno)); return 0; }
    unsigned char pre[12];
    int ok = 0;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        snprintf(why, wl, "not a .npy file (bad magic)");
        goto out;
    }
    uint64_t hlen;
    long data_off;
    if (pre[6] == 1) {
        hlen = pre[8] | (uint64_t)pre[9] << 8;
        data_off = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) { snprintf(why, wl, "truncated header"); goto out; }
        hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        data_off = 12;
    } else {
        snprintf(why, wl, "unsupported .npy version %d", pre[6]);
        goto out;
    }
    if (hlen > NPY_MAX_HEADER) { snprintf(why, wl, "header too large"); goto out; }
    hdr = malloc(hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) { snprintf(why, wl, "truncated header"); goto out; }
    hdr[hlen] = 0;
    if (memchr(hdr, 0, hlen)) { snprintf(why, wl, "NUL in header"); goto out; }
    cz_dtype dt = CZ_F32;
    int ndim = 0;
    int64_t shape[CZ_MAX_NDIM];
    if (!parse_header(hdr, hlen, &dt, &ndim, shape, why, wl)) goto out;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && n > UINT64_MAX / (uint64_t)shape[i]) { snprintf(why, wl, "shape overflows"); goto out; }
        n *= (uint64_t)shape[i];
    }
    size_t es = cz_dtype_size(dt);
    if (n > (UINT64_MAX >> 4) / es) { snprintf(why, wl, "shape overflows"); goto out; }
    uint64_t bytes = n * es;
    if (fseek(f, 0, SEEK_END) != 0) { snprintf(why, wl, "cannot seek"); goto out; }
    long fsz = ftell(f);
    if (fsz < 0 || (uint64_t)fsz != (uint64_t)data_off + hlen + bytes) {
        snprintf(why, wl, "file holds %ld data bytes, the header's shape needs %llu",
                 fsz < 0 ? -1L : fsz - data_off - (long)hlen, (unsigned long long)bytes);
        goto out;
    }
    if (fseek(f, data_off + (long)hlen, SEEK_SET) != 0) { snprintf(why, wl, "cannot seek"); goto out; }
    in->buf = malloc(bytes ? (size_t)bytes : 1);
    if (!in->buf) { snprintf(why, wl, "out of memory"); goto out; }
    if (bytes && fread(in->buf, 1, (size_t)bytes, f) != bytes) { snprintf(why, wl, "truncated data"); goto out; }
    if (dt == CZ_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((unsigned char *)in->buf)[i] > 1) { snprintf(why, wl, "bool value not 0/1"); goto out; }
    in->t.dtype = dt;
    in->t.ndim = ndim;
    for (int i = 0; i < ndim; i++) in->t.shape[i] = shape[i];
    in->t.data = in->buf;
    in->t.bytes = (size_t)bytes;
    ok = 1;
out:
    free(hdr);
    fclose(f);
    return ok;
}

static int write_npy(const char *path, const cz_tensor *t) {
    const char *d = descr_of(t->dtype);
    if (!d) return 0;
    char dict[1024];
    int p = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", d);
    for (int i = 0; i < t->ndim; i++)
        p += snprintf(dict + p, sizeof dict - (size_t)p, "%lld%s", (long long)t->shape[i],
                      t->ndim == 1 ? "," : (i + 1 < t->ndim ? ", " : ""));
    p += snprintf(dict + p, sizeof dict - (size_t)p, "), }");
    size_t total = 10 + (size_t)p + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)p + pad + 1;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)p, f) == (size_t)p;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && (t->bytes == 0 || fwrite(t->data, 1, t->bytes, f) == t->bytes);
    return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
    const char *model = NULL, *outdir = ".";
    int threads = 1, precise = 0, n_in = 0, rc = 1;
    input_t *ins = calloc(MAX_INPUTS, sizeof *ins);
    if (!ins) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(); free(ins); return 0; }
        if ((strcmp(a, "--input") == 0 || strcmp(a, "-i") == 0) && i + 1 < argc) {
            const char *v = argv[++i], *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1] || n_in >= MAX_INPUTS) { usage(); free(ins); return 2; }
            ins[n_in].name = strndup(v, (size_t)(eq - v));
            ins[n_in].t.name = ins[n_in].name;
            ins[n_in].path = eq + 1;
            n_in++;
        } else if (strcmp(a, "-o") == 0 && i + 1 < argc) {
            outdir = argv[++i];
        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 4096) { usage(); free(ins); return 2; }
            threads = (int)t;
        } else if (strcmp(a, "--precise") == 0) {
            precise = 1;
        } else if (a[0] == '-' || model) {
            usage();
            free(ins);
            return 2;
        } else {
            model = a;
        }
    }
    if (!model) { usage(); free(ins); return 2; }
    char err[1024];
    for (int i = 0; i < n_in; i++) {
        const char *path = ins[i].path;
        char why[256];
        if (!read_npy(path, &ins[i], why, sizeof why)) {
            fprintf(stderr, "cz_run: input '%s' (%s): %s\n", ins[i].name, path, why);
            goto done;
        }
    }
    cz_options opt = {.threads = threads, .precise = precise};
    cz_model *m = NULL;
    cz_status st = cz_open_file(model, &opt, &m, err, sizeof err);
    if (st) {
        fprintf(stderr, "cz_run: %s: %s: %s\n", model, cz_status_name(st), err);
        goto done;
    }
    int n_out = cz_output_count(m);
    if (n_out <= 0) {
        fprintf(stderr, "cz_run: %s holds no graph to run\n", model);
        cz_close(m);
        goto done;
    }
    cz_tensor *outs = calloc((size_t)n_out, sizeof *outs);
    cz_tensor *tin = calloc((size_t)n_in + 1, sizeof *tin);
    if (!outs || !tin) { free(outs); free(tin); cz_close(m); goto done; }
    for (int i = 0; i < n_in; i++) tin[i] = ins[i].t;
    st = cz_run(m, tin, n_in, outs, n_out, err, sizeof err);
    if (st) {
        fprintf(stderr, "cz_run: %s: %s\n", cz_status_name(st), err);
    } else {
        rc = 0;
        for (int j = 0; j < n_out; j++) {
            size_t pl = strlen(outdir) + strlen(outs[j].name) + 8;
            char *p = malloc(pl);
            if (!p) { rc = 1; break; }
            snprintf(p, pl, "%s/%s.npy", outdir, outs[j].name);
            if (strchr(outs[j].name, '/') || !write_npy(p, &outs[j])) {
                fprintf(stderr, "cz_run: cannot write output '%s' to %s\n", outs[j].name, p);
                rc = 1;
            }
            free(p);
        }
    }
    for (int j = 0; j < n_out; j++) cz_free(m, outs[j].data);
    free(outs);
    free(tin);
    cz_close(m);
done:
    for (int i = 0; i < n_in; i++) { free(ins[i].name); free(ins[i].buf); }
    free(ins);
    return rc;
}
