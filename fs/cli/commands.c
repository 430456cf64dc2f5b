#include "commands.h"

#include <stdio.h>
#include <string.h>

static const struct qfs_command commands[] = {
    {"cache", "cache stat|gc|verify|export|import [DIR]: inspect and share the chunk cache",
     qfs_cmd_cache},
    {"warm", "warm PATH...: fill the cache for virtual files ahead of use", qfs_cmd_warm},
    {"status", "status MOUNTPOINT: readable summary of a mount's /.quantfs/status",
     qfs_cmd_status},
};

const struct qfs_command *qfs_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

void qfs_commands_usage(void)
{
    printf("\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  quantfs %s\n", commands[i].summary);
}
