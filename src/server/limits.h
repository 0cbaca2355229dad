/*
 * ternd's limits: every budget a remote party meets (docs/security.md), by name, for
 * `--limit NAME=VALUE` and `--limits`. A name selects one field of the endpoint's tern_settings
 * (started from tern_settings_server_default), of the rendezvous server's tern_rdv_config, of
 * the relay's tern_relay_config or of the driver's accepted streams (tern_driver_stream_limits,
 * started from tern_driver_config_default); the value replaces that field's default.
 */
#ifndef TERND_LIMITS_H
#define TERND_LIMITS_H
#include <stdint.h>
#include <stdio.h>

#include "tern/driver.h"
#include "tern/relay.h"
#include "tern/rendezvous.h"
#include "tern/tern.h"

#define TERND_MAX_LIMITS 64 /* --limit options on one command line */

typedef struct ternd_limit {
    int index;      /* into the table (ternd_limit_parse) */
    uint64_t value;
} ternd_limit;

/* Parses "NAME=VALUE" (VALUE a decimal integer, optionally with a k/m/g suffix: x1024^n).
 * Returns 0, or -1 after printing one line on err (unknown name, bad or out-of-range value). */
int ternd_limit_parse(const char *text, ternd_limit *out, FILE *err);
/* Sets each limit into the structure its name belongs to (any pointer may be NULL: skipped). */
void ternd_limits_apply(const ternd_limit *l, int n, tern_settings *st, tern_rdv_config *rdv,
                        tern_relay_config *relay, tern_driver_stream_limits *stream);
/* Prints every name with its default and what it bounds (`ternd --limits`). */
void ternd_limits_list(FILE *out);
#endif
