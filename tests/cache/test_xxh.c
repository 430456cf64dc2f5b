/* cache/xxh.h against the xxHash library itself: the AVX2 path must give XXH3's values
 * (keys and entry checksums are shared between hosts with and without it).  Every length
 * 0..5000 at a few alignments, and large inputs (1 MiB + k) at every alignment 0..63. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cache/xxh.h"

static int failures;

static void check(const unsigned char *p, size_t n)
{
    const XXH128_hash_t a = qfs_xxh3_128(p, n), b = XXH3_128bits(p, n);
    if (qfs_xxh3_64(p, n) != XXH3_64bits(p, n) || a.low64 != b.low64 || a.high64 != b.high64) {
        if (failures++ < 10)
            fprintf(stderr, "FAIL length %zu at alignment %zu\n", n, (size_t)((uintptr_t)p % 64));
    }
}

int main(void)
{
    const size_t big = (1u << 20) + 4096;
    unsigned char *buf = malloc(big + 128);
    if (!buf)
        return 1;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < big + 128; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        buf[i] = (unsigned char)(s >> 32);
    }
    long n = 0;
    for (size_t len = 0; len <= 5000; len++)
        for (size_t off = 0; off < 64; off += 21, n++)
            check(buf + off, len);
    for (size_t off = 0; off < 64; off++)
        for (size_t k = 0; k < 3; k++, n++)
            check(buf + off, (1u << 20) + k * 1031);
    /* the library path when forced, for the record */
    qfs_xxh_force_library(1);
    check(buf, big);
    qfs_xxh_force_library(0);
    free(buf);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("qfs_xxh3_64/128 equal to libxxhash on %ld inputs\nPASS\n", n);
    return 0;
}
