/* Service manager integration, without libsystemd.
 *
 * 1. qfs_notify_send: the sd_notify protocol.  One datagram of "KEY=VALUE\n..." text to
 *    the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract
 *    namespace).  No $NOTIFY_SOCKET: nothing is sent (not a systemd service).
 * 2. The supervisor thread of a mount (qfs_notify_start): once the mount answers (the
 *    root can be listed through it) it sends READY=1; then a STATUS= line (models served,
 *    cache use, bytes served) every interval; on a stop request (first SIGTERM/SIGINT) it
 *    sends STOPPING=1 and drains: it tries a non-lazy unmount, which the kernel refuses
 *    (EBUSY) while any file of the mount is open or mapped, until it succeeds (the
 *    request loop then ends by itself, every reply sent) or the timeout passes (then
 *    force_exit ends the loop; the caller's lazy unmount detaches what is left).
 * No FUSE here: the caller passes force_exit. */
#ifndef QFS_FS_NOTIFY_H
#define QFS_FS_NOTIFY_H

#include <stddef.h>

struct qfs_ll;
struct qfs_notify;

/* Send one message, e.g. "READY=1" or "STATUS=...".  0, or a negative errno (nothing to
 * send to is 0).  Async-signal-safe apart from the getenv. */
int qfs_notify_send(const char *msg);

struct qfs_notify_cfg {
    const char *mountpoint;   /* absolute path as mounted; copied */
    const struct qfs_ll *ll;  /* namespace and cache for the STATUS= line */
    unsigned status_interval; /* seconds between STATUS= lines; 0: only at READY */
    unsigned stop_timeout;    /* seconds to wait for open files on a stop request */
    /* Ends the request loop now (second signal, drain timeout).  Called from the
     * supervisor thread. */
    void (*force_exit)(void *arg);
    void *arg;
};

/* Start the supervisor thread (all signals blocked in it).  0 or a negative errno. */
int qfs_notify_start(const struct qfs_notify_cfg *cfg, struct qfs_notify **out);
/* Ask for a graceful stop.  Async-signal-safe (a write to a pipe); NULL is a no-op. */
void qfs_notify_request_stop(struct qfs_notify *n);
/* After the request loop ended: sends STOPPING=1 if not sent yet, joins and frees.
 * NULL is a no-op. */
void qfs_notify_stop(struct qfs_notify *n);

/* The one-line summary used for STATUS=: "N models (M files) from SRC; cache ...".
 * Never fails (truncates). */
void qfs_notify_describe(const struct qfs_ll *ll, char *buf, size_t n);

#endif
