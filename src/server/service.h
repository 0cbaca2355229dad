/*
 * ternd services: each service (STUN; the tern listener with rendezvous and relay) is a set of
 * threads started from the parsed configuration and stopped when ternd gets SIGINT/SIGTERM.
 * main.c only knows this table of operations, so adding a service is one more entry in its
 * list.
 */
#ifndef TERND_SERVICE_H
#define TERND_SERVICE_H

#include <stdio.h>

#include "server/limits.h"
#include "tern/stun.h"

#define TERND_MAX_LISTEN 4
#define TERND_TERN_PORT 4433 /* the tern service's default UDP port, and its TCP port */
#define TERND_TLS_PORT 443   /* the tern service's default TLS port (where web traffic passes) */
/* STUN over TCP: public-server defaults of --stun-tcp-max, --stun-tcp-per-addr, --stun-tcp-idle */
#define TERND_STUN_TCP_MAX 1024
#define TERND_STUN_TCP_PER_ADDR 8
#define TERND_STUN_TCP_IDLE_S 10

/* Everything ternd's command line sets. */
typedef struct ternd_config {
    int stun_only;                       /* run only the STUN service */
    int n_listen;
    tern_addr listen[TERND_MAX_LISTEN];  /* STUN addresses (default 0.0.0.0:3478) */
    int has_alt;
    tern_addr alt;                       /* RFC 5780 alternate IP:port */
    int workers;                         /* UDP worker threads per address (default: cores) */
    int udp, tcp;                        /* transports (both on) */
    int batch;                           /* datagrams per recvmmsg/sendmmsg (64) */
    int quiet;                           /* no startup lines */
    tern_stun_server_config stun;        /* responder settings */
    /* the tern service (tern_service.c) */
    int no_tern;                         /* --no-tern */
    int n_tern_listen;
    tern_addr tern_listen[TERND_MAX_LISTEN]; /* default 0.0.0.0:4433 */
    const char *key_file;                /* --key: private key file; NULL: a fresh key */
    int no_relay;                        /* --no-relay: no relay on the tern port */
    /* tern over streams (docs/protocol.md, "Stream transport"): rendezvous and relay alike */
    int no_stream;                       /* --no-stream: UDP only */
    int n_tcp_listen, n_tls_listen;
    int tcp_default, tls_default;        /* the lists below are the defaults (none given): each
                                            --tern-listen address with a fixed port over TCP,
                                            port 443 of its IP over TLS; a default that cannot
                                            be bound is a warning, not an error */
    tern_addr tcp_listen[TERND_MAX_LISTEN]; /* --tcp-listen (transport TCP) */
    tern_addr tls_listen[TERND_MAX_LISTEN]; /* --tls-listen (transport TLS) */
    const char *tls_cert, *tls_key;      /* --tls-cert, --tls-key; NULL: self-signed at start */
    /* access control (--token-secret, --require-tokens): tern_rdv_config's token settings */
    int has_token_secret;
    uint8_t token_secret[32];            /* TERN_RDV_SECRET_LEN */
    uint8_t require_register_token, require_join_token, require_offer_token;
    /* STUN over TCP (stun_service.c) */
    int stun_tcp_max;                    /* --stun-tcp-max: connections held at once (1024) */
    int stun_tcp_per_addr;               /* --stun-tcp-per-addr: per source IP, IPv6 /64 (8) */
    int stun_tcp_idle_s;                 /* --stun-tcp-idle: seconds without a complete
                                            request before a connection is closed (10) */
    /* memory (tern_service.c) */
    int no_malloc_trim;                  /* --no-malloc-trim: never give freed memory back */
    /* --limit NAME=VALUE: budgets over their public-server defaults (limits.h) */
    int n_limits;
    ternd_limit limits[TERND_MAX_LIMITS];
} ternd_config;

typedef struct ternd_service {
    const char *name;
    /* Starts the service's threads. Returns 0 or a negative TERN_ERR_* after printing why. */
    int (*start)(struct ternd_service *svc, const ternd_config *cfg);
    /* Asks the threads to stop and joins them. */
    void (*stop)(struct ternd_service *svc);
    /* Prints counters (one "name key=value ..." line per group); after stop it is exact. */
    void (*report)(struct ternd_service *svc, FILE *out);
    /* Closes the sockets and frees the state (after stop, or after a failed start). */
    void (*destroy)(struct ternd_service *svc);
    void *state;
} ternd_service;

/* The STUN service (stun_service.c). */
extern const ternd_service ternd_stun_service;
/* The tern listener: rendezvous server, relay and datagram echo (tern_service.c). */
extern const ternd_service ternd_tern_service;

#endif
