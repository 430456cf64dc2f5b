/* quantfs cache: not written yet. */
#include <stdio.h>

#include "commands.h"

int qfs_cmd_cache(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "quantfs %s: not implemented yet\n", argv[0]);
    return 2;
}
