/* Byte counts for people: what the status command and the service's STATUS= line print. */
#ifndef QFS_HUMAN_H
#define QFS_HUMAN_H

#include <stddef.h>
#include <stdint.h>

/* v as "123 B" or "1.5 GiB" (binary units up to TiB) into buf[n]; returns buf. */
const char *qfs_human_bytes(uint64_t v, char *buf, size_t n);

#endif
