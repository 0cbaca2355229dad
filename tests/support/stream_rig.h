/*
 * stream_rig: the harness of the driver's stream-transport e2e tests (tests/e2e/test_stream_drv.c,
 * the transports' behaviour; tests/e2e/test_stream_limits.c, the limits as an attacker tries
 * them), in one thread through the embedding API:
 *   - side: one driver (a server listening on 127.0.0.1:0 over TCP and TLS, or a client) and
 *     what its callbacks saw; make() builds one, connect_pair() a connected server and client;
 *   - pump()/serve(): run one or two drivers (and a turn_fn side task) until a condition or a
 *     time limit;
 *   - the echo messages (msg_len, fill) and the byte-stream pattern both files check;
 *   - raw sockets: tcp_listen, tcp_dial, peek_read (the in-test services and attackers).
 * Checks fail through support/tt.h, so these are only called from inside a tt case.
 */
#ifndef TERN_TESTS_STREAM_RIG_H
#define TERN_TESTS_STREAM_RIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tern/driver.h"

#define N_MSG 400

typedef struct side {
    tern_driver *d;
    tern_conn *conn;
    int established, closed, close_err;
    char reason[300];
    unsigned got, bad;
    int echo;
    /* rx_hook: frames with sock TERN_DRIVER_STREAM_SOCK, their sender */
    unsigned hooked;
    tern_addr hook_from;
    size_t hook_sock;
    /* a byte-stream flow: bytes received in order, and any that differ from the pattern */
    uint64_t rx_bytes, rx_bad;
    /* on_stream_error: calls, the last line, and the answer (1: close the handshakes) */
    unsigned stream_errors;
    char stream_line[300];
    int keep_trying;
} side;

/* The next server's stream_window (0: the default); connect_pair resets it after its server. */
extern uint64_t g_stream_window;

/* Byte i of the bulk transfer. */
uint8_t pattern(uint64_t i);
/* Message q: 2..max bytes (q * 37 apart), each byte a function of q and its place. */
size_t msg_len(unsigned q, size_t max);
void fill(uint8_t *b, unsigned q, size_t len);

/* The endpoint callbacks make() sets, for a driver a test configures itself (test_ipv6): the
 * connection established (s->conn), a datagram echoed (s->echo) or checked (s->got, s->bad). */
void on_established(tern_conn *c, void *user);
void on_datagram(tern_conn *c, const uint8_t *data, size_t len, void *user);

/* A server (listening on 127.0.0.1:0 over TCP and TLS, limits lim when not NULL) or a client
 * driver (no stream listener, UDP on loopback only); ends the case when it cannot be made. */
void make(side *s, int server, const tern_keypair *kp, const tern_driver_stream_limits *lim);
/* The server's TCP (tls 0) or TLS (1) listener address. */
tern_addr listener(side *srv, int tls);

/* A side task run on every turn of pump (the in-test servers and attackers). */
typedef void (*turn_fn)(void *user);
/* Runs a and b (either may be NULL) until done(a, b) (NULL: never) or limit_ms have passed. */
void pump(side *a, side *b, int (*done)(side *, side *), uint64_t limit_ms, turn_fn turn,
          void *tu);
/* Runs the server alone for ms. */
void serve(side *srv, uint64_t ms);
/* Conditions for pump. */
int both_established(side *c, side *s);
int all_back(side *c, side *s); /* N_MSG echoes back (or bad) */
int any_back(side *c, side *s); /* one echo back (or bad) */
int client_closed(side *c, side *s);

/* A server and a client driver connected over the server's TCP (tls 0) or TLS (1) listener
 * only, established; ends the case when they are not. Returns the address connected to. */
tern_addr connect_pair(side *srv, side *cli, int tls, const tern_driver_stream_limits *lim);

/* A nonblocking TCP listener on 127.0.0.1:0; its address in *bound. */
int tcp_listen(tern_addr *bound);
/* A blocking TCP client socket to a (connected before it returns); rcvbuf 0: the default. */
int tcp_dial(const tern_addr *a, int rcvbuf);
/* Reads what waits without blocking: bytes read, 0 at EOF, -1 when nothing waits. */
ssize_t peek_read(int fd, uint8_t *buf, size_t len);

#endif
