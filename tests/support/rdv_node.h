/*
 * rdv_node: a rendezvous server on the simulated network, for the rendezvous tests. One sim node
 * wraps a server tern_endpoint and a tern_rdv_server (and, optionally, a tern_relay on the same
 * port, as ternd runs it), so the server's timeouts run on the virtual clock.
 *
 * Keys and randomness come from seeded PRNGs derived from the sim's seed (streams 1, 2 and 3), and
 * the endpoint, the rendezvous server and an owned relay each have a counting allocator, checked
 * clean by rdv_node_free: every run is exactly repeatable.
 */
#ifndef TERN_TESTS_RDV_NODE_H
#define TERN_TESTS_RDV_NODE_H

#include "sim/sim.h"
#include "support/tt.h"
#include "tern/relay.h"
#include "tern/rendezvous.h"
#include "tern/tern.h"

#define RDV_NODE_CONNS 16
#define RDV_NODE_RELAY_Q 1024

typedef struct rdv_node {
    sim *s;
    tern_endpoint *ep;
    sim_node *node;
    tern_addr addr;         /* 192.0.2.1:4433 */
    tt_mem mem, rmem, lmem; /* the endpoint, the rendezvous server, an owned relay */
    tt_rng rng, rrng, lrng;
    tern_keypair key;
    tern_rdv_server *rdv;
    uint64_t base_mem;      /* the rendezvous server's memory with no peer */
    int refused;            /* connections the rendezvous server refused (on_accept) */
    /* The connections accepted and not yet freed (the first RDV_NODE_CONNS): what the server
     * sees of its clients, tern_conn_remote() giving their public addresses. */
    tern_conn *conns[RDV_NODE_CONNS];
    size_t n_conns;
    /* Datagrams whose first byte is TERN_RELAY_TYPE go to this relay when it is set. Set by
     * rdv_node_init (opts.with_relay): owned, its timers run here and rdv_node_free frees it.
     * Or set by the test after rdv_node_init: forwarding only, the test runs its timers and
     * frees it. */
    tern_relay *relay;
    int owns_relay;
    uint64_t relay_base_mem; /* an owned relay's memory with no session (lmem.current) */
    /* Forwarded datagrams wait here for the node's send call, so that they cross the sim's
     * middleboxes (NATs, blocks) like every other datagram; allocated with the first one. */
    struct rdv_node_pkt *relay_q;
    size_t relay_q_head, relay_q_len;
    uint64_t relay_q_full;   /* datagrams dropped because RDV_NODE_RELAY_Q were waiting */
    /* When set (by the test), sees each datagram for the relay as it arrives, before it is
     * forwarded: what the relay holds (a test looking for plaintext that must not be there). */
    void (*relay_tap)(void *user, const uint8_t *data, size_t len);
    void *relay_tap_user;
} rdv_node;

typedef struct rdv_node_opts {
    /* NULL: tern_rdv_config_default. mem and rand are replaced with the node's; with_relay
     * replaces has_relay, relay and relay_sessions. */
    const tern_rdv_config *rdv;
    /* NULL: the endpoint's defaults with room for many handshakes at once (max_half_open,
     * handshake_rate and handshake_burst raised: no retry round trip). */
    const tern_settings *settings;
    /* A relay with tern_relay_config_default, offered in introductions as the server's port. */
    int with_relay;
} rdv_node_opts;

/* A relay tap (rdv_node.relay_tap, user: the rdv_needle) that counts the datagrams for the relay
 * holding a byte string: a plaintext marker that must never cross the relay. */
typedef struct rdv_needle {
    const char *text;
    uint64_t seen;
} rdv_needle;
void rdv_needle_tap(void *needle, const uint8_t *data, size_t len);

/* Creates the server and adds it to s at 192.0.2.1:4433; o may be NULL (all defaults). Requires
 * success (TT_REQUIRE). */
void rdv_node_init(rdv_node *r, sim *s, const rdv_node_opts *o);
/* Removes the node, deletes the endpoint (no callbacks), the rendezvous server and an owned
 * relay, and checks their allocators are clean. */
void rdv_node_free(rdv_node *r);
tern_rdv_stats rdv_node_stats(const rdv_node *r);

#endif
