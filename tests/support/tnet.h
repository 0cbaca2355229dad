/*
 * tnet: tern endpoints on the simulated network, with their events recorded, for protocol tests.
 *
 * Each tnet_node is one endpoint at one address with its own counting allocator and seeded PRNG
 * (derived from the sim's seed), so every run is exactly repeatable. Callbacks record what
 * happened (established, accepted, closed with which error/code/reason, datagrams received).
 */
#ifndef TERN_TESTS_TNET_H
#define TERN_TESTS_TNET_H

#include "sim/sim.h"
#include "sim/sim_tern.h"
#include "support/tt.h"
#include "tern/tern.h"

typedef struct tnet_node tnet_node;
struct tnet_node {
    tern_endpoint *ep;
    sim_node *node;
    sim *sim;          /* the simulation it was added to */
    tern_addr addr;
    tt_mem mem;
    tt_rng rng;
    tern_keypair key;
    /* events */
    int established;
    uint64_t established_at;
    int closed;
    int close_err;
    uint64_t close_code;
    char reason[300];
    size_t reason_len;
    uint64_t closed_at;
    int freed;
    uint64_t datagrams;
    uint64_t datagram_bytes;
    uint64_t rtt_samples;
    tern_conn *conn;   /* the last connection that was established/connected here */
    int refuse;        /* on_accept refuses */
    uint64_t path_changes; /* on_path calls */
    /* encoder feedback: on_target_rate calls, the last rate and when it came */
    uint64_t target_events, target_bps, target_at;
    /* flows */
    uint64_t messages, message_bytes, flows_closed;
    void (*on_message)(struct tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *data,
                       size_t len);
    void *user;        /* for on_message */
};

/* Creates an endpoint (server when is_server) at addr and adds it to s. settings may be NULL
 * (defaults). A server gets a key pair derived from the seed. Requires success (TT_REQUIRE). */
void tnet_node_init(tnet_node *n, sim *s, const tern_addr *addr, int is_server,
                    const tern_settings *settings, uint64_t stream);
/* Removes from the sim, deletes the endpoint, checks the allocator is clean. */
void tnet_node_free(tnet_node *n, sim *s);
/* Client: connects to server (using server's public key unless key is given). */
tern_conn *tnet_connect(sim *s, tnet_node *client, const tnet_node *server, const uint8_t *key);

tern_endpoint_stats tnet_stats(const tnet_node *n);

/* Runs s for ms milliseconds of virtual time; requires the sim to stay healthy. */
void tnet_run_ms(sim *s, uint64_t ms);

/* A link with one-way delay (ms) and loss both ways between a and b. */
void tnet_link(sim *s, const tern_addr *a, const tern_addr *b, double delay_ms, double loss,
               int burst_max);

#endif
