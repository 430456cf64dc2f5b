#include "cache/xxh.h"

#include <stdatomic.h>

#include "cache/xxh_avx2.h"

/* Below this the call overhead dominates and either path takes nanoseconds. */
#define AVX2_MIN 1024

/* -1 unknown; else 1 when the AVX2 path is used. */
static _Atomic int use_avx2 = -1;

static int avx2(void)
{
#if defined(__x86_64__)
    int u = atomic_load_explicit(&use_avx2, memory_order_relaxed);
    if (u < 0) {
        __builtin_cpu_init();
        u = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&use_avx2, u, memory_order_relaxed);
    }
    return u;
#else
    return 0;
#endif
}

void qfs_xxh_force_library(int on) { atomic_store_explicit(&use_avx2, on ? 0 : -1, memory_order_relaxed); }

uint64_t qfs_xxh3_64(const void *p, size_t n)
{
#if defined(__x86_64__)
    if (n >= AVX2_MIN && avx2())
        return qfs_xxh3_64_avx2(p, n);
#endif
    return XXH3_64bits(p, n);
}

XXH128_hash_t qfs_xxh3_128(const void *p, size_t n)
{
#if defined(__x86_64__)
    if (n >= AVX2_MIN && avx2())
        return qfs_xxh3_128_avx2(p, n);
#endif
    return XXH3_128bits(p, n);
}
