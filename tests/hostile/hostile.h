/*
 * tern_hostile's shared parts (docs/security.md, issue 12): options, sockets, identities (one
 * endpoint each), the event loop and the figures every row prints. hostile_core.c implements
 * them; the rows are in tern_hostile.c and hostile_m4.c.
 */
#ifndef TERN_HOSTILE_H
#define TERN_HOSTILE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/flow.h"
#include "core/packet.h"
#include "tern/rendezvous.h"
#include "tern/stun.h"

#include <sodium.h>

#define MAX_SOCKS 4096
#define MAX_PEERS 2048

typedef struct hostile_opt {
    tern_addr server;
    uint8_t server_key[TERN_KEY_LEN];
    int pid;           /* ternd's pid for VmRSS (0: none) */
    int n;             /* the row's count (addresses, connections, members, ...) */
    int conns;         /* h2: attacking connections */
    double secs;       /* attack duration */
    double hold;       /* the attack holds its effect this long after attack_hold=1 */
    int idle;          /* idle registered peers opened first: the idle cost per connection */
    uint8_t target[TERN_PEER_ID_LEN];
    int has_target;
    tern_addr stun;    /* m6: ternd's STUN TCP address */
    int has_stun;
    uint32_t rate;     /* h2: attack packets per second */
    uint8_t secret[TERN_RDV_SECRET_LEN]; /* m4: ternd's --token-secret (the operator's) */
    int has_secret;    /* every registration of this harness then carries a valid token */
    int stun_idle;     /* m6: ternd's --stun-tcp-idle in seconds (0: not checked) */
} hostile_opt;

extern hostile_opt opt;

typedef struct hsock {
    int fd;
    tern_addr local;
    int peer; /* the identity whose endpoint it feeds, or -1: count only */
    uint64_t rx_bytes, rx_dgrams, tx_bytes, tx_dgrams;
} hsock;

extern hsock socks[MAX_SOCKS];
extern int n_socks;

enum { ERR_CODES = 16, EXP_RING = 512 };

/* m4: what an attacker's requests must draw, in order (the server answers the requests of one
 * flow in the order they arrive, each with exactly one message) */
typedef struct expect_ring {
    uint8_t kind[EXP_RING];
    uint16_t code[EXP_RING];
    uint32_t head, tail; /* head - tail: requests not answered yet */
    uint64_t matched, mismatched, accepted; /* accepted: a non-ERROR answer (a breach) */
    uint64_t got[ERR_CODES];
} expect_ring;

typedef struct hpeer {
    int sock;
    tern_endpoint *ep;
    tern_conn *c;
    uint64_t flow;
    int flow_open, established, closed, close_err, registered;
    int silent;   /* reads and drops what arrives: never acknowledges */
    int provider; /* answers CALLs (1) or keeps them (2: never replies) */
    int dirty;
    uint8_t id[TERN_PEER_ID_LEN];
    uint64_t rx_msgs, errors, err[ERR_CODES], offered, joined, presence, group_msgs;
    uint64_t peer_info, peer_info_relay, introduced, calls_in, replies;
    expect_ring *exp; /* m4: an attacker whose every answer is checked */
    int attacker;     /* m4: its ID must never show up in a group, a directory, a service */
    uint64_t presence_attacker, joined_attacker; /* m4: attackers seen in PRESENCE / JOINED */
    uint32_t joined_count; /* the member count of the last JOINED */
    uint8_t raw[300]; /* the last message that arrived (names: the receiver's verdict) */
    size_t raw_len;
    int got_raw;
} hpeer;

extern hpeer peers[MAX_PEERS];
extern int n_peers;
extern int wait_first, wait_count; /* the identities all_established/all_registered look at */

void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

uint64_t now_ns(void);
long rss_kb(void);
void rss_sample(uint64_t now);
void to_sockaddr(const tern_addr *a, struct sockaddr_in *sin);
void from_sockaddr(const struct sockaddr_in *sin, tern_addr *a);
int sock_open(uint8_t a, uint8_t b, uint8_t c, int peer);
int sock_send(int si, const tern_addr *to, const uint8_t *data, size_t len);
int rdv_send(hpeer *p, uint64_t now, const tern_rdv_msg *m);
void peer_callbacks(tern_endpoint_config *cfg, hpeer *p);
int peer_new(uint8_t a, uint8_t b, uint8_t c);
void loop(double ms, int (*done)(void));
int all_established(void);
int all_registered(void);
void wait_established(int first, int count, double ms);
void do_register(int pi, const tern_addr *local_cands, size_t n);
void wait_registered(int first, int count, double ms);
int spawn(int count, uint8_t net, uint8_t b0, int per_ip, int reg);
int count_est(int first, int count, int *closed);
void close_all(void);
int craft_send(hpeer *p, int si, const uint8_t *frames, size_t len);
void begin(void);
void hold(void);
/* The attack phase of a row: prints attack_start=1, calls step(ctx) until secs have passed or it
 * returns 0 (the attacker is gone or done), prints attack_hold=1 once the attack has run 2 s
 * (hostile.sh samples ternd then; at the end when it ran shorter), then holds opt.hold seconds.
 * Returns the seconds the attack itself ran. */
double attack(double secs, int (*step)(void *ctx), void *ctx);
void finish(int attack_conns);
void sum_errors(int first, int count, const char *pfx);
void read_secret(const char *path);
void hostile_init(void);
void hostile_exit(void);

void row_m4(void);

#endif
