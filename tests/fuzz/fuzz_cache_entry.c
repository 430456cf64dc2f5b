/* Fuzz target: a cache entry file (cache/store.h) through qfs_store_read: as given, with
 * and without the key check and an HMAC key; then the same bytes with the checksums (and,
 * for format 3, the HMAC) made right, so that the reader's later checks and its success
 * path run too. */
#include <xxhash.h>

#include "cache/store.h"
#include "fuzz_util.h"

FUZZ_INIT(NULL)

static const uint8_t hkey[16] = "fuzz-hmac-key-16";

static void read_all(const char *path, const struct qfs_cache_key *k)
{
    const struct qfs_store_auth auth = {.key = hkey, .len = sizeof hkey};
    for (int mode = 0; mode < 3; mode++) {
        struct qfs_store_hdr h;
        uint8_t *payload = NULL;
        char why[128];
        int rc = qfs_store_read(path, mode == 1 ? k : NULL, mode == 2 ? 5 : UINT64_MAX,
                                mode == 2 ? &auth : NULL, false, &h, &payload, why, sizeof why);
        if (rc == 1) {
            uint8_t enc[QFS_STORE_HDR_MAX];
            if (qfs_store_hdr_encode(&h, enc) != qfs_store_hdr_size(&h))
                abort();
            volatile uint8_t s = h.len ? payload[h.len - 1] : 0;
            (void)s;
            free(payload);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qfs_cache_key k;
    memset(&k, 0, sizeof k);
    if (size >= 24)
        memcpy(k.b, data + 8, 16);
    read_all(fuzz_write("entry", data, size), &k);

    /* the repaired copy */
    if (size < QFS_STORE_HDR)
        return 0;
    struct qfs_store_hdr h;
    memset(&h, 0, sizeof h);
    uint32_t version, tag;
    memcpy(&version, data + 4, 4);
    memcpy(&tag, data + 40, 4);
    h.key = k;
    h.tag = tag;
    h.authed = (version & 1) != 0;
    const size_t hs = h.authed ? QFS_STORE_HDR_AUTH : QFS_STORE_HDR;
    if (size < hs)
        return 0;
    const uint8_t *payload = data + hs;
    h.len = size - hs;
    h.sum = XXH3_64bits(payload, (size_t)h.len);
    const struct qfs_store_auth auth = {.key = hkey, .len = sizeof hkey};
    if (h.authed && qfs_store_mac_set(&h, payload, &auth) < 0)
        return 0;
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    const size_t n = qfs_store_hdr_encode(&h, buf);
    memcpy(buf + n, payload, (size_t)h.len);
    read_all(fuzz_write("entry", buf, n + (size_t)h.len), &k);
    free(buf);
    return 0;
}
