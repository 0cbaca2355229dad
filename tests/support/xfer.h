/*
 * xfer: one bulk transfer of a byte pattern on one reliable ordered flow between two tnet
 * nodes, checked byte for byte in order at the receiver: a lost byte stops the count short of
 * total, a byte delivered twice shifts the pattern (bad). Shared by the simulator tests that
 * measure transfers (test_flow, test_mobility, test_pmtu_sim).
 *
 * A test embeds sim_xfer as the first member of its own struct when it needs more fields, sets
 * the receiver's user to it and its on_message to sim_xfer_on_message; on_rx, when set, runs
 * after each delivery has been counted.
 */
#ifndef TERN_TESTS_XFER_H
#define TERN_TESTS_XFER_H

#include "support/tnet.h"

typedef struct sim_xfer sim_xfer;
struct sim_xfer {
    sim *s;
    tnet_node *snd, *rcv;
    tern_conn *sc;
    uint64_t flow;
    uint64_t total, queued, received, bad;
    uint64_t last_rx_at, max_gap, gap_end; /* the longest time between deliveries, and its end */
    uint64_t done_at;                      /* when received reached total */
    void (*on_rx)(sim_xfer *x);            /* optional, after each delivery */
};

/* The byte at offset i of the transfer. */
uint8_t sim_xfer_pattern(uint64_t i);

/* tnet on_message: n->user is the sim_xfer (or a struct that starts with one). */
void sim_xfer_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len);

/* Queues pattern bytes on x->flow in messages of msg_size (at most SIM_XFER_MAX_MSG) while the
 * flow holds less than queue_limit bytes, until total are queued or the send is refused. */
#define SIM_XFER_MAX_MSG (16u << 20)
void sim_xfer_fill(sim_xfer *x, size_t msg_size, uint64_t queue_limit);

#endif
