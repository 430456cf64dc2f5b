/* Whole-file read-only mappings of the small metadata files we parse (GGUF, imatrix). */
#ifndef QFS_MAPFILE_H
#define QFS_MAPFILE_H

#include <stdint.h>

/* Map the regular file at path (PROT_READ, MAP_PRIVATE; the descriptor is closed again).
 * what names the expected content for the error message ("a GGUF file").  A file that is
 * not regular or is shorter than min_size (>= 1) is -EINVAL.  0, or a negative errno with
 * one log line naming the file; *map and *size are set only on success. */
int qfs_map_file(const char *path, const char *what, uint64_t min_size, void **map,
                 uint64_t *size);
void qfs_unmap_file(void *map, uint64_t size); /* map NULL: no-op */

#endif
