#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int qfs_map_file(const char *path, const char *what, uint64_t min_size, void **map,
                 uint64_t *size)
{
    struct stat st;
    int r = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        qfs_err("%s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) != 0) {
        r = -errno;
        qfs_err("%s: fstat: %s", path, strerror(-r));
    } else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < min_size) {
        qfs_err("%s: not %s (not a regular file of at least %llu bytes)", path, what,
                (unsigned long long)min_size);
        r = -EINVAL;
    } else {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            r = -errno;
            qfs_err("%s: mmap: %s", path, strerror(-r));
        } else {
            *map = p;
            *size = (uint64_t)st.st_size;
        }
    }
    close(fd);
    return r;
}

void qfs_unmap_file(void *map, uint64_t size)
{
    if (map)
        munmap(map, (size_t)size);
}
