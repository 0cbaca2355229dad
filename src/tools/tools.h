/*
 * The tern command-line client: the sub-command table's entry type and the helpers the commands
 * share: util.c (exit codes, the command's connection and why it ended, options, numbers, the
 * clock, signals, the end of a driver session), pinger.c (tern ping's pings) and xfer.c (tern
 * send/recv: the file hash, progress, names). One file per sub-command holds only that command.
 */
#ifndef TERN_TOOLS_H
#define TERN_TOOLS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
int cmd_stream(int argc, char **argv); /* tern stream send | recv (cmd_stream.c) */
/* Peer mode (--via): tern ping PEER_ID --via ... (cmd_peer.c). */
int cmd_ping_via(int argc, char **argv);

/* Exit codes of tern ping, send, recv and bench (ping, bench: 0-5). */
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

typedef struct tern_driver tern_driver;

/* Why a connection ended, as its on_closed said. */
typedef struct tools_close_note {
    int err;          /* 0 (it has not), else the TERN_ERR_* it ended with */
    uint64_t code;    /* with TERN_ERR_PEER_CLOSED: the peer's close code */
    char reason[300]; /* the peer's reason (tools_copy_reason: escaped for the terminal) */
} tools_close_note;

/* Fills n from on_closed's arguments (reason may be NULL). */
void tools_close_note_set(tools_close_note *n, int err, uint64_t code, const char *reason,
                          size_t len);

/* Prints (to stderr, prefixed with cmd) why a connection to where ended (n), and returns the
 * XFER_EXIT_* code for it. timeout_ms/idle_ms are the handshake and idle timeouts in force. */
int tools_explain_conn_error(const char *cmd, const char *where, const tools_close_note *n,
                             uint64_t timeout_ms, uint64_t idle_ms);

/* The one connection of a client command (tern ping, send, bench; recv's current sender), its
 * driver and why it ended. It is the first member of the command's state, so that
 * tools_on_closed and tools_on_conn_free serve as the state's callbacks (user_data is the
 * state). */
typedef struct tools_conn {
    tern_driver *d;          /* the command's driver: stopped when the connection ends */
    tern_conn *conn;         /* NULL until there is one, and once the endpoint freed it */
    tools_close_note closed; /* err 0 until it ends other than by our own close */
    int stream_only;         /* it has no UDP candidate (--transport tcp|tls): a definite
                                stream failure ends it (tools_on_stream_error) */
} tools_conn;

/* on_closed: when c is the command's connection and did not end by our own close
 * (TERN_ERR_LOCAL_CLOSED: the command already knows its outcome), notes why and stops the
 * driver; other connections are ignored. */
void tools_on_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                     void *user);
/* on_conn_free: forgets c when it is the command's connection. */
void tools_on_conn_free(tern_conn *c, void *user);

/* ---- tern ping's pings (pinger.c), direct and --via: one PING at a time on the command's
 * connection, the next one interval_ns after the previous one went out. */
typedef struct tern_driver_timer tern_driver_timer;
typedef struct tools_pinger {
    tools_conn *link;               /* the connection pinged, and the driver */
    tern_driver_timer *timer;       /* paces the pings; the command frees it */
    unsigned count, sent, answered; /* count 0: until interrupted */
    uint64_t interval_ns, sent_at;
    int waiting;                    /* a PING is out, its PONG not yet in */
    uint64_t rtt_min, rtt_max, rtt_sum;
} tools_pinger;

/* Sets pg up on link's driver (link->d set). Returns TERN_OK, or the timer's error. */
int tools_pinger_init(tools_pinger *pg, tools_conn *link, unsigned count, uint64_t interval_ns);
/* Sends a PING now (none while there is no connection, or the core refuses it). */
void tools_pinger_send(tools_pinger *pg);
/* From on_rtt: 1 when rtt_ns answers our PING (counted), 0 for a keep-alive's answer. */
int tools_pinger_answer(tools_pinger *pg, uint64_t rtt_ns);
/* After an answer was reported: stops the driver once count pings went out, else arms the
 * timer for the next one. */
void tools_pinger_next(tools_pinger *pg);
/* "--- NAME tern ping ---", then the counts and min/avg/max RTT (nothing when none was sent). */
void tools_pinger_summary(const tools_pinger *pg, const char *name);

/* Prints "CMD: bad argument A[ V]" and the usage to stderr; returns XFER_EXIT_USAGE (2). */
int tools_bad_argument(const char *cmd, const char *a, const char *v, void (*usage)(FILE *f));

/* ---- transports (transport.c): how a client reaches its listener, where a listener accepts
 * streams, and the lines that say which transport a connection uses */
enum { TOOLS_TRANSPORT_AUTO, TOOLS_TRANSPORT_UDP, TOOLS_TRANSPORT_TCP, TOOLS_TRANSPORT_TLS };
typedef struct tools_transport_opts {
    int choice;         /* --transport auto|udp|tcp|tls: TOOLS_TRANSPORT_* (default auto) */
    const char *stream; /* --stream ADDR:PORT[/tcp|/tls]; NULL: the UDP address over TCP (tls:
                           port 443) */
    uint64_t race_ms;   /* --race-delay MS: UDP's head start; 0: the core's (250 ms) */
} tools_transport_opts;

void tools_transport_opts_default(tools_transport_opts *o);
/* When argv[*i] is --transport, --stream or --race-delay: takes it and its value (advancing *i)
 * and returns 1; -1 when the value is missing or bad; 0 when it is none of them. */
int tools_transport_opt(tools_transport_opts *o, int argc, char **argv, int *i);
/* The usage lines of those options. */
void tools_transport_usage(FILE *f);
typedef struct tern_driver_connect_cfg tern_driver_connect_cfg;
typedef struct tern_driver_config tern_driver_config;
/* Fills cfg (for tern_driver_connect_opts) from o, the listener's UDP address and its key; the
 * race delay is always explicit (--race-delay, else the core's tern_connect_opts default).
 * Returns 0, or -1 after printing why (a bad --stream). */
int tools_transport_connect_cfg(const char *cmd, const tools_transport_opts *o,
                                const tern_addr *remote, const uint8_t pub[TERN_KEY_LEN],
                                tern_driver_connect_cfg *cfg);
/* The driver's on_stream_error (user: the command's tools_conn): a definite failure of the
 * stream (refused, not a tern service, TLS failed) ends a stream-only connection still in its
 * handshake at once, noted as TERN_ERR_REFUSED with the driver's line as the reason (the loop
 * stops); with UDP in the race it is left to the handshake timeout. */
int tools_on_stream_error(tern_driver *d, const tern_addr *remote, const char *line, void *user);
/* Sets dc's on_stream_error to it for link, and link->stream_only from cfg's choice. */
void tools_transport_watch(tern_driver_config *dc, const tern_driver_connect_cfg *cfg,
                           tools_conn *link);
/* "udp", "tcp" or "tls": a's transport. */
const char *tools_transport_name(const tern_addr *a);
/* "tcp 203.0.113.2:4433/tcp" (and " (relayed)"): the transport and address of c's path. */
void tools_transport_describe(const tern_conn *c, char *out, size_t len);
/* "CMD: transport tcp ADDR/tcp, connected N ms after the first attempt" (since_ns: when the
 * command called connect, tools_now_ns; with cfg's race: " (UDP first, the stream after a race
 * delay of R ms)") once c is established, and "CMD: transport now udp ADDR" on each on_path
 * after that. */
void tools_transport_connected(FILE *f, const char *cmd, const tern_conn *c, uint64_t since_ns,
                               const tern_driver_connect_cfg *cfg);
void tools_transport_changed(FILE *f, const char *cmd, const tern_conn *c);

/* A listener's stream options (tern recv, tern bench --listen): --tcp-listen ADDR:PORT,
 * --tls-listen ADDR:PORT, --tls-cert FILE, --tls-key FILE (NULL: not given). */
typedef struct tools_listen_opts {
    const char *tcp, *tls, *cert, *key;
} tools_listen_opts;
/* As tools_transport_opt, for those options. */
int tools_listen_opt(tools_listen_opts *o, int argc, char **argv, int *i);
void tools_listen_usage(FILE *f);
/* Adds the stream listeners and the certificate to dc. Returns 0, or -1 after printing why. */
int tools_listen_apply(const char *cmd, const tools_listen_opts *o, tern_driver_config *dc);
/* "CMD: listening on tcp ADDR" for each stream listener of d (as bound), on stdout. */
void tools_listen_print(const char *cmd, tern_driver *d, const tools_listen_opts *o);

/* The options of the commands that connect to a tern listener (tern send, tern bench). */
typedef struct tools_client_opts {
    const char *to;         /* --to ADDR:PORT */
    const char *server_key; /* --server-key HEX */
    int aead;               /* --aead aes|chacha: TERN_AEAD_* (default TERN_AEAD_AUTO) */
    int integrity_only;     /* --integrity-only */
    int cc;                 /* --cc bbr|cubic|newreno: TERN_CC_*; -1 (default): the core's */
    uint64_t payload;       /* --payload BYTES (1200..TERN_MAX_DATAGRAM); 0: the core's */
    uint64_t timeout_ms;    /* --timeout MS: the handshake's (default 5000) */
    uint64_t idle_ms;       /* --idle-timeout MS (default 30000) */
    int verbose;            /* --verbose, -v */
    tools_transport_opts transport; /* --transport, --stream, --race-delay */
} tools_client_opts;

void tools_client_opts_default(tools_client_opts *o);
/* When argv[*i] is one of those options: takes it and its value (advancing *i) and returns 1;
 * -1 when its value is missing or bad; 0 when it is none of them. */
int tools_client_opt(tools_client_opts *o, int argc, char **argv, int *i);
/* Writes the options' endpoint settings (timeouts, cipher, congestion controller, payload). */
void tools_client_settings(const tools_client_opts *o, tern_settings *s);
/* Decodes --server-key HEX (NULL: missing). Returns 0, or -1 after printing that it needs 64
 * hex characters. */
int tools_server_key(const char *cmd, const char *hex, uint8_t pub[TERN_KEY_LEN]);

/* The arguments of tern stun and tern nat-type: HOST[:PORT] [--rto MS] [--tries N] [-v]. */
typedef struct tools_stun_args {
    const char *host;
    long rto_ms, tries; /* defaults set by the caller; accepted 1..60000 and 1..20 */
    int verbose;        /* -v (only where allow_verbose) */
} tools_stun_args;

/* Parses them into a (defaults set) and resolves the host (port 3478 by default) into server.
 * Returns -1 to go on, else the exit code: 0 after --help, 2 usage (help printed on stderr),
 * 1 when the host does not resolve. */
int tools_stun_args_parse(const char *cmd, int argc, char **argv, void (*help)(FILE *f),
                          int allow_verbose, tools_stun_args *a, tern_addr *server);

/* Parses a decimal number in [lo, hi]; with a K/M/G suffix (powers of 1024) when scaled. Returns
 * 0, or -1 when text is not one. */
int tools_parse_u64(const char *text, uint64_t lo, uint64_t hi, int scaled, uint64_t *out);

/* Process CPU time (user + system) in nanoseconds, from getrusage. */
uint64_t tools_cpu_ns(void);

/* Resolves "HOST", "HOST:PORT", "[V6]:PORT" or "V6" (getaddrinfo for names) with default_port.
 * Returns 0, or -1 after printing why. */
int tools_resolve(const char *text, uint16_t default_port, tern_addr *out);

/* From now on SIGINT and SIGTERM stop d's loop (d may be NULL) and tools_interrupted() says one
 * came; tools_release_signals() gives them back their default action. */
void tools_catch_signals(tern_driver *d);
void tools_release_signals(void);
int tools_interrupted(void);

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
