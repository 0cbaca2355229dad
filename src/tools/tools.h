/*
 * The tern command-line client: the sub-command table's entry type and the helpers the commands
 * share: util.c (exit codes and why a connection ended, numbers, the clock, signals, the end of
 * a driver session) and xfer.c (tern send/recv: the file hash, progress, names). One file per
 * sub-command holds only that command.
 */
#ifndef TERN_TOOLS_H
#define TERN_TOOLS_H

#include <stddef.h>
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
int cmd_loadgen_rdv(int argc, char **argv); /* argv[1] is "rdv" */
int cmd_keygen(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_ping(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
/* Peer mode (--via): tern ping PEER_ID --via ... (cmd_peer.c). */
int cmd_ping_via(int argc, char **argv);

/* Exit codes of tern send, recv and bench (0-5 as tern ping's). */
enum {
    XFER_EXIT_OK = 0,
    XFER_EXIT_OTHER = 1,
    XFER_EXIT_USAGE = 2,
    XFER_EXIT_BAD_KEY = 3,   /* the listener does not hold --server-key */
    XFER_EXIT_NO_ANSWER = 4, /* handshake timeout: nothing listening, unreachable */
    XFER_EXIT_LOST = 5,      /* the peer went away, closed, reset or refused the connection */
    XFER_EXIT_FILE = 6,      /* cannot read the input or write the output (disk full, ...) */
    XFER_EXIT_VERIFY = 7,    /* the receiver's hash or size did not match the sender's */
};

/* Prints (to stderr, prefixed with cmd) why a connection to where ended with err, and returns the
 * XFER_EXIT_* code for it. timeout_ms/idle_ms are the handshake and idle timeouts in force. */
int tools_explain_conn_error(const char *cmd, const char *where, int err, uint64_t code,
                             const char *reason, uint64_t timeout_ms, uint64_t idle_ms);

/* Parses a decimal number in [lo, hi]; with a K/M/G suffix (powers of 1024) when scaled. Returns
 * 0, or -1 when text is not one. */
int tools_parse_u64(const char *text, uint64_t lo, uint64_t hi, int scaled, uint64_t *out);

/* Process CPU time (user + system) in nanoseconds, from getrusage. */
uint64_t tools_cpu_ns(void);

/* Resolves "HOST", "HOST:PORT", "[V6]:PORT" or "V6" (getaddrinfo for names) with default_port.
 * Returns 0, or -1 after printing why. */
int tools_resolve(const char *text, uint16_t default_port, tern_addr *out);

typedef struct tern_driver tern_driver;

/* From now on SIGINT and SIGTERM stop d's loop (d may be NULL) and tools_interrupted() says one
 * came; tools_release_signals() gives them back their default action. */
void tools_catch_signals(tern_driver *d);
void tools_release_signals(void);
int tools_interrupted(void);

typedef struct tern_driver_timer tern_driver_timer;

/* The end of every command that runs a driver: closes its connections with code and reason and
 * waits grace_ns at most for them to go (tern_driver_shutdown; grace_ns 0: no goodbye, e.g.
 * after the loop failed), gives SIGINT/SIGTERM back, then frees the command's timer and the
 * driver (either may be NULL). */
void tools_session_close(tern_driver *d, tern_driver_timer *timer, uint64_t code,
                         const char *reason, uint64_t grace_ns);

/* Copies a peer's close reason (len bytes, not terminated) into dst[cap] as a C string, its
 * control characters escaped (tools_text_escape: it goes to a terminal). */
void tools_copy_reason(char *dst, size_t cap, const char *reason, size_t len);

/* --verbose of tern send/recv: the driver's counters and, when c is not NULL, the connection's
 * (packets, RTTs, the congestion controller's estimate and window), on stderr. */
void tools_print_counters(const char *cmd, tern_driver *d, tern_conn *c);

/* Monotonic clock in nanoseconds. */
uint64_t tools_now_ns(void);

/* Waits until fd is readable or deadline_ns passes (ns, monotonic). Returns 1 readable, 0 not. */
int tools_wait_readable(int fd, uint64_t deadline_ns);

/* ---- tern send / tern recv (xfer.c): the file transfer's messages (tern send's header says
 * more) */
#define XFER_VERSION 2    /* 2: SHA-256 in the end message (1 had BLAKE2b-256) */
#define XFER_HASH_LEN 32 /* SHA-256 */
#define XFER_MAX_NAME 255
enum {
    XFER_MSG_HEADER = 'H',  /* sender: 'H' version u8, size u64 BE, name length u16 BE, name */
    XFER_MSG_DATA = 'D',    /* sender: 'D' file bytes */
    XFER_MSG_END = 'E',     /* sender: 'E' SHA-256 of the whole file */
    XFER_MSG_VERDICT = 'V', /* receiver, on its own flow: 'V' XFER_V_* u8, text */
};
enum { XFER_V_OK = 0, XFER_V_FILE = 1, XFER_V_VERIFY = 2, XFER_V_PROTOCOL = 3 };

/* The whole-file hash of tern send/recv: SHA-256 from OpenSSL's libcrypto, which uses the CPU's
 * SHA extensions where it has them (about 2 GB/s per core here, against 0.74 GB/s for libsodium's
 * BLAKE2b; docs/benchmarks.md). xfer_hash_init returns 0, or -1 out of memory; xfer_hash_free
 * may be called on a zeroed or freed xfer_hash. */
typedef struct xfer_hash {
    void *ctx; /* EVP_MD_CTX */
} xfer_hash;
int xfer_hash_init(xfer_hash *h);
void xfer_hash_update(xfer_hash *h, const void *data, size_t len);
void xfer_hash_final(xfer_hash *h, uint8_t out[XFER_HASH_LEN]);
void xfer_hash_free(xfer_hash *h);

/* Progress on stderr: a bar with rate and time left on a terminal, a line every 2 s otherwise. */
typedef struct xfer_progress {
    const char *cmd, *name;
    uint64_t total, t0, last_t, rate_t, rate_done;
    double rate_bps;
    int tty, quiet;
} xfer_progress;
void xfer_progress_init(xfer_progress *p, const char *cmd, const char *name, uint64_t total,
                        uint64_t now, int quiet);
/* final: print now, and end the bar's line. */
void xfer_progress_update(xfer_progress *p, uint64_t done, uint64_t now, int final);
/* The part of path after its last '/'. */
const char *xfer_base_name(const char *path);

#endif
