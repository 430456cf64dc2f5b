/* Private to cache/xxh.c: XXH3 compiled for AVX2 (call only when the CPU has it). */
#ifndef QFS_CACHE_XXH_AVX2_H
#define QFS_CACHE_XXH_AVX2_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

uint64_t qfs_xxh3_64_avx2(const void *p, size_t n);
XXH128_hash_t qfs_xxh3_128_avx2(const void *p, size_t n);

#endif
