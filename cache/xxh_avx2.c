/* xxHash's own AVX2 implementation (its header, inlined), the one file built with
 * -mavx2: cache/xxh.c calls it only on a CPU that has AVX2. */
#if defined(__x86_64__)
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cache/xxh_avx2.h"

uint64_t qfs_xxh3_64_avx2(const void *p, size_t n) { return XXH3_64bits(p, n); }
XXH128_hash_t qfs_xxh3_128_avx2(const void *p, size_t n) { return XXH3_128bits(p, n); }
#endif
