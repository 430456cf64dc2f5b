/* XXH3 for the cache's large inputs (source tensors, chunk payloads), with xxHash's AVX2
 * path where the CPU has it.  Debian's libxxhash is built for baseline x86-64 (SSE2,
 * about 7 GB/s here); the AVX2 path is several times faster, and XXH3's values do not
 * depend on the vector path, so keys and checksums stay the same on every host
 * (tests/cache/test_xxh.c compares both on every length up to a few KiB and on large
 * inputs at every alignment). */
#ifndef QFS_CACHE_XXH_H
#define QFS_CACHE_XXH_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

uint64_t qfs_xxh3_64(const void *p, size_t n);
XXH128_hash_t qfs_xxh3_128(const void *p, size_t n);

/* The library's functions whatever the CPU (tests): 1 to force them, 0 to choose. */
void qfs_xxh_force_library(int on);

#endif
