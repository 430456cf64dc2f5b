/* /.quantfs/metrics: the mount's counters in the Prometheus text exposition format,
 * version 0.0.4 (what node_exporter's textfile collector and any scraper of a file
 * read).  Rendered when the file is opened, like the status file (status.h), from the
 * same sources: per virtual file counters (read.h), the chunk cache (cache.h), the
 * generations (rescan.h), the device and the prewarm.
 *
 * Every family has one HELP and one TYPE line before its samples; counters end in
 * _total; label values are escaped (\\ \" \n) and made valid UTF-8 ('?' for a stray
 * byte).  Every sample carries the label mountpoint (so that the files of several mounts
 * can sit side by side in one textfile collector directory).  Per file counters are summed per (model, format, variant): model is the
 * description's label (the model directory shown; ORG--NAME@REV for a hub revision,
 * whichever view it is read through), format the registry's name, variant the file's
 * (empty for a header-only file such as a loadable directory's config.json).  A model
 * described again (its source changed) starts its counters from zero, which scrapers
 * read as a counter reset. */
#ifndef QFS_FS_METRICS_H
#define QFS_FS_METRICS_H

#include <stddef.h>

#include "status.h"

struct qfs_ns;
struct qfs_cache;

/* Render into *out (malloc'd, NUL-terminated, *len bytes without the NUL).  cache may be
 * NULL.  0 or -ENOMEM. */
int qfs_metrics_render(const struct qfs_ns *ns, struct qfs_cache *cache,
                       const struct qfs_status_info *info, char **out, size_t *len);

#endif
