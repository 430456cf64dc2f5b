/* The kernel's readahead window of a FUSE mount.  FUSE's INIT can only lower the 128 KiB
 * the kernel starts a new mount's bdi with, and that window is the size of every read
 * request a page-cache reader (cat, cp, llama.cpp's mmap faults) sends: a quantfs mount
 * then answers eight 128 KiB requests where one of 1 MiB would do.  Root can raise it
 * through sysfs (/sys/class/bdi/MAJ:MIN/read_ahead_kb, MAJ:MIN from /proc/self/mountinfo,
 * so that no request to our own, not yet serving, mount is needed). */
#ifndef QFS_FS_READAHEAD_H
#define QFS_FS_READAHEAD_H

#include <stdint.h>

/* Set the readahead of the mount at mountpoint (as the kernel lists it: an absolute
 * path) to bytes (rounded down to KiB).  0, -ENOENT (no such mount), or the errno of the
 * sysfs write (-EACCES when not root, -EROFS in a container's read-only /sys). */
int qfs_readahead_set(const char *mountpoint, uint64_t bytes);

/* The same lookup as above, for tests and the log: *kb, or a negative errno. */
int qfs_readahead_get(const char *mountpoint, uint64_t *kb);

#endif
