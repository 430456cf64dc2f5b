/* Subcommands of the quantfs binary: `quantfs cache ...`, `quantfs warm ...`,
 * `quantfs status ...`.  Anything else is the mount command line. */
#ifndef QFS_FS_COMMANDS_H
#define QFS_FS_COMMANDS_H

struct qfs_command {
    const char *name;
    const char *summary; /* one line for --help */
    /* argv[0] is the subcommand name; returns the exit status. */
    int (*run)(int argc, char **argv);
};

/* NULL when name is not a subcommand. */
const struct qfs_command *qfs_command_find(const char *name);
/* Print the subcommand list (for --help). */
void qfs_commands_usage(void);

int qfs_cmd_cache(int argc, char **argv);  /* fs/cmd_cache.c */
int qfs_cmd_warm(int argc, char **argv);   /* fs/cmd_warm.c */
int qfs_cmd_status(int argc, char **argv); /* fs/cmd_status.c */

#endif
