/*
 * cpu.c -- run-time CPU feature detection (cpuid + xgetbv) and small kernel helpers.
 *
 * The library is compiled for baseline x86-64 (or any other architecture); the SIMD kernels
 * carry __attribute__((target(...))) and are only called when czk_cpu_features() says the
 * CPU *and the OS* (XSAVE state enabled in XCR0) support them.
 */
#include "kint.h"

#if CZK_X86
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect(void) {
    unsigned a, b, c, d;
    int f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6) return 0;                       /* XMM + YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    if (avx2 && fma) f |= CZK_F_AVX2;
    if ((b >> 3) & 1) f |= CZK_F_BMI;
    /* opmask + ZMM_Hi256 + Hi16_ZMM state; our AVX-512 kernels also use BW/VL */
    if ((f & CZK_F_AVX2) && (xcr0 & 0xE6) == 0xE6 && avx512f && avx512bw && avx512vl) {
        f |= CZK_F_AVX512;
        if (vnni) f |= CZK_F_VNNI;
    }
    return f;
}
#else
static int detect(void) { return 0; }
#endif

/* Detected once; a benign race (every thread computes the same value). */
static int g_features = -1;
static int g_mask = -1;

int czk_cpu_features(void) {
    int f = __atomic_load_n(&g_features, __ATOMIC_RELAXED);
    if (f < 0) {
        f = detect();
        __atomic_store_n(&g_features, f, __ATOMIC_RELAXED);
    }
    return f;
}

void czk_set_feature_mask(int mask) { __atomic_store_n(&g_mask, mask, __ATOMIC_RELAXED); }

int czk_features(void) { return czk_cpu_features() & __atomic_load_n(&g_mask, __ATOMIC_RELAXED); }

void *czk_scratch(cz_ws *ws, size_t bytes) {
    return cz_arena_alloc(&ws->arena, bytes ? bytes : 1, 64);
}

int czk_threads(const cz_ws *ws, double work) {
    int t = ws ? ws->threads : 1;
    /* at least ~1M MACs per thread: waking a sleeping OpenMP worker (OMP_WAIT_POLICY
     * passive, or a core busy with another runtime's spinning threads) costs tens of us and
     * at times milliseconds -- LeNet-5's conv2 (1.1M MACs, ~30 us) took 8 ms per call at 2
     * threads next to ONNX Runtime sessions in one process */
    if (t <= 1 || work < 2e6) return 1;
    double maxt = work / 1e6;
    if ((double)t > maxt) t = (int)maxt;
    return t < 1 ? 1 : t;
}

void czk_ws_child(cz_ws *child, const cz_ws *parent) {
    uint64_t cap = 0;
    if (parent->arena.cap) cap = parent->arena.cap > parent->arena.used ? parent->arena.cap - parent->arena.used : 1;
    cz_arena_init(&child->arena, parent->arena.a, cap);
    child->threads = parent->threads;
    child->precise = parent->precise;
}
