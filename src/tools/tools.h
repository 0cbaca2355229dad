/* The tern command-line client: the sub-command table's entry type and shared helpers. */
#ifndef TERN_TOOLS_H
#define TERN_TOOLS_H

#include <stdint.h>

#include "tern/tern.h"

typedef struct tern_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the sub-command's name */
} tern_cmd;

int cmd_stun(int argc, char **argv);
int cmd_nat_type(int argc, char **argv);
int cmd_loadgen(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_ping(int argc, char **argv);

/* Resolves "HOST", "HOST:PORT", "[V6]:PORT" or "V6" (getaddrinfo for names) with default_port.
 * Returns 0, or -1 after printing why. */
int tools_resolve(const char *text, uint16_t default_port, tern_addr *out);

/* Monotonic clock in nanoseconds. */
uint64_t tools_now_ns(void);

/* Waits until fd is readable or deadline_ns passes (ns, monotonic). Returns 1 readable, 0 not. */
int tools_wait_readable(int fd, uint64_t deadline_ns);

#endif
