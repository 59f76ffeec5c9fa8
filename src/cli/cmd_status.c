/* SPDX-License-Identifier: MIT */
/* cli/cmd_status.c -- placeholder, filled below. */
#include "cli/cli.h"
int cmd_status_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 2;
}
