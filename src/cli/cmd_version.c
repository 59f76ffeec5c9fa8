/* SPDX-License-Identifier: MIT */
/* cli/cmd_version.c -- `tandem version`: program and library versions. */
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <llhttp.h>
#include <uv.h>

#include "cli/cli.h"

#define TANDEM_VERSION "0.1.0"

int cmd_version_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("tandem %s (libuv %s, llhttp %d.%d.%d, hiredis %d.%d.%d)\n", TANDEM_VERSION,
           uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH,
           HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    return 0;
}
