/* quantfs warm: not written yet. */
#include <stdio.h>

#include "commands.h"

int qfs_cmd_warm(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "quantfs %s: not implemented yet\n", argv[0]);
    return 2;
}
