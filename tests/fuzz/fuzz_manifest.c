/* Fuzz target: an export directory's MANIFEST (cache/share.c).  The input is MANIFEST; the
 * harness signs it (MANIFEST.sig under a fixed key) so that the parser runs behind the
 * signature check, and keeps one valid entry at v1/00/0112233445566778899aabbccddeef
 * (written at start; seeds/manifest/one-entry lists it with its digest).  Then: the signed
 * shared-tier load and its look-ups, and an import into a scratch store under the key (an
 * input that does not verify copies nothing). */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cache/store.h"
#include "fuzz_util.h"

static const uint8_t hkey[16] = "fuzz-hmac-key-16";
static const struct qfs_cache_key entry_key = {
    .b = {0x00, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78, 0x89, 0x9a, 0xab, 0xbc, 0xcd, 0xde,
          0xef}};

static void make_entry(void)
{
    const char *what;
    char *where = NULL;
    static const uint8_t payload[5] = "hello";
    char root[512];
    snprintf(root, sizeof root, "%s/v1", fuzz_dir());
    if (qfs_store_mkdir_p(root) < 0 || qfs_store_write(root, &entry_key, QFS_CACHE_TAG(QFS_CODEC_GGUF, 1), payload, 5, NULL,
                        NULL, &what, &where) < 0) {
        fprintf(stderr, "fuzz: %s %s\n", what, where ? where : "");
        abort();
    }
    free(where);
}

FUZZ_INIT(make_entry)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char hexd[] = "0123456789abcdef";
    uint8_t mac[32];
    unsigned maclen = 0;
    char sig[12 + 64 + 2];
    if (!HMAC(EVP_sha256(), hkey, sizeof hkey, data, size, mac, &maclen))
        abort();
    memcpy(sig, "hmac-sha256 ", 12);
    for (int i = 0; i < 32; i++) {
        sig[12 + 2 * i] = hexd[mac[i] >> 4];
        sig[13 + 2 * i] = hexd[mac[i] & 15];
    }
    sig[76] = '\n';
    fuzz_write("MANIFEST", data, size);
    fuzz_write("MANIFEST.sig", sig, 77);

    const struct qfs_store_auth auth = {.key = hkey, .len = sizeof hkey};
    struct qfs_store_manifest *m = NULL;
    if (qfs_store_manifest_load(fuzz_dir(), &auth, &m) == 0) {
        struct qfs_cache_key k = entry_key;
        (void)qfs_store_manifest_lists(m, &k);
        struct qfs_store_hdr h = {.key = k, .len = 5};
        (void)qfs_store_manifest_check(m, &h, (const uint8_t *)"hello");
        memset(&k, 0, sizeof k);
        if (size >= 16)
            memcpy(k.b, data + size - 16, 16);
        (void)qfs_store_manifest_lists(m, &k);
        qfs_store_manifest_free(m);
    }
    char root[512];
    snprintf(root, sizeof root, "%s/import/v1", fuzz_dir());
    (void)qfs_store_import(root, fuzz_dir(), hkey, sizeof hkey);
    return 0;
}
