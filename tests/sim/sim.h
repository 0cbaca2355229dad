/*
 * sim: a deterministic discrete-event network simulator for tern's protocol tests.
 *
 * Nodes are anything with the four sans-I/O entry points (recv, send, next_deadline, expire); a
 * tern_endpoint is one (sim_add_tern_endpoint in sim_tern.h). Nodes own addresses; datagrams go
 * from an address to an address over directed links that model serialization at a rate with a
 * finite drop-tail queue, propagation delay and jitter, random or bursty loss, reordering,
 * duplication, bit corruption, blackholes and an MTU that drops larger datagrams silently.
 * Middlebox callbacks can drop, rewrite or inject datagrams (NAT rebinding,
 * man-in-the-middle). A stream link (sim_link_params.stream) models a TCP or TLS connection as
 * the core sees it through the driver: every datagram arrives, in order, after the delay and the
 * serialization at the rate; sim_link_close ends it. Addresses include their transport, so a
 * node's 10.0.0.1:443/tcp and 10.0.0.1:443 are two addresses.
 *
 * Time is virtual (uint64 nanoseconds starting at 0) and jumps straight to the next arrival or
 * node deadline, so seconds of network time run in milliseconds. One seed drives every random
 * choice: the same seed and the same node behaviour give the same event trace, byte for byte.
 *
 * The loop, repeated by sim_run_until / sim_run_while:
 *   1. every node that was touched (added, woken, received, expired) is asked to send until it
 *      returns 0; each datagram enters its link at the current time;
 *   2. the clock jumps to the earliest pending item: an arrival or a node deadline (arrivals
 *      first on a tie, then deadlines; ties inside each by insertion order / node order);
 *   3. that item runs: expire(node, now) or recv(node, now, local, remote, data, len).
 * A node whose deadline does not move past now after repeated expiries, or a clock that stops
 * advancing, or a run that exceeds its step budget, ends with SIM_ERR_STUCK and a message
 * (sim_error) instead of spinning.
 *
 * Calling into a node from outside (e.g. tern_conn_send_datagram between runs) is fine: each
 * sim_run_* call first polls every node. Inside a run (from a callback or a middlebox) call
 * sim_node_wake() for a node you touched other than the one being called.
 */
#ifndef TERN_TESTS_SIM_H
#define TERN_TESTS_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "tern/tern.h"

typedef struct sim sim;
typedef struct sim_node sim_node;
typedef struct sim_link sim_link;

/* Results of sim_run_*; negative values are errors that stop the simulation for good. */
enum {
    SIM_OK = 0,
    SIM_TIMEOUT = 1,       /* sim_run_while / sim_run_until_quiet: t_max reached first */
    SIM_ERR_STUCK = -1,    /* a node's deadline or the clock stopped moving (see sim_error) */
    SIM_ERR_NODE = -2,     /* a node's send returned an error or an oversized datagram */
    SIM_ERR_NOMEM = -3,
    SIM_ERR_INVALID = -4,  /* bad argument (unknown address, duplicate address, ...) */
};

/* ---------------------------------------------------------------- nodes */

typedef struct sim_node_ops {
    /* One datagram arrived at local (one of the node's addresses) from remote. */
    void (*recv)(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                 const uint8_t *data, size_t len);
    /* Writes up to max datagrams into buf (buf_len bytes, room for max * TERN_MAX_DATAGRAM) and
     * describes them in dgrams. Returns how many; 0 when nothing is due; negative on error.
     * A datagram whose local address has family TERN_AF_NONE leaves from the node's first
     * address. */
    int (*send)(void *node, uint64_t now, tern_datagram *dgrams, size_t max, uint8_t *buf,
                size_t buf_len);
    /* When expire must next run; TERN_TIME_NEVER when never. May be NULL (never). */
    uint64_t (*next_deadline)(void *node);
    /* Runs the node's timers due at now. May be NULL. */
    void (*expire)(void *node, uint64_t now);
} sim_node_ops;

/* Datagrams a node may return from one send call, and the buffer size handed to it. */
#define SIM_SEND_BATCH 64
#define SIM_SEND_BUF (SIM_SEND_BATCH * TERN_MAX_DATAGRAM)

/* ---------------------------------------------------------------- links */

typedef struct sim_link_params {
    uint64_t delay_ns;      /* one-way propagation delay */
    uint64_t jitter_ns;     /* extra delay, uniform in [0, jitter_ns]; FIFO kept unless reorder */
    uint64_t rate_bps;      /* serialization rate in bits/s; 0 = unlimited */
    size_t queue_bytes;     /* bytes waiting for (or in) serialization; 0 = unlimited; the
                               packet that would exceed it is dropped (drop tail). Needs rate. */
    size_t overhead_bytes;  /* added to each datagram's size for rate and queue (e.g. 28 for
                               IPv4+UDP); 0 = count the payload only */
    double loss;            /* long-run loss probability per packet. With burst_max > 0 the
                               losses come in bursts of 1..burst_max (uniform) consecutive
                               packets, with at least one delivered packet between bursts, and
                               the long-run rate is still `loss` */
    int burst_max;          /* 0 = independent losses */
    /* Gilbert-Elliott two-state loss, on top of `loss` (0 = off): per packet, move good->bad with
     * p_good_to_bad, bad->good with p_bad_to_good; in the bad state lose with ge_loss_in_bad. */
    double ge_p_good_to_bad, ge_p_bad_to_good, ge_loss_in_bad;
    double reorder;             /* probability a packet is held back by reorder_extra_ns so that
                                   later packets overtake it */
    uint64_t reorder_extra_ns;  /* 0 = max(1 ms, 2 * jitter_ns) */
    double duplicate;           /* probability a second copy arrives right after the first */
    double corrupt;             /* probability one random bit of the datagram is flipped */
    /* Periodic blackhole from time 0: up for blackhole_up_ns, then down for blackhole_down_ns,
     * repeating. 0 down = none. A packet is dropped if the link is down when it enters or when it
     * would arrive. */
    uint64_t blackhole_up_ns, blackhole_down_ns;
    /* A stream (TCP, TLS) between the two addresses: reliable and ordered. The loss models,
     * jitter, reordering, duplication, corruption and the queue limit do not apply (TCP buffers
     * and retransmits below tern, and the driver's framing keeps packets whole); delay, rate,
     * overhead and blackholes do. */
    int stream;
    /* The link's MTU: a datagram whose size plus overhead_bytes exceeds it is dropped silently
     * (no ICMP, as on a path that black-holes large packets). 0 = no limit. Change it mid-run
     * with sim_link_set_params. */
    size_t mtu;
} sim_link_params;

typedef struct sim_link_stats {
    uint64_t sent;              /* datagrams that entered the link (after the middlebox) */
    uint64_t delivered;         /* copies handed to a node's recv */
    uint64_t dropped_loss;      /* random, bursty or Gilbert-Elliott loss */
    uint64_t dropped_queue;     /* drop tail */
    uint64_t dropped_blackhole;
    uint64_t dropped_mtu;       /* larger than the link's mtu */
    uint64_t dropped_middlebox;
    uint64_t dropped_closed;    /* in flight when sim_link_close ended the stream */
    uint64_t unroutable;        /* arrived at an address no node holds */
    uint64_t duplicated, corrupted, reordered;
    uint64_t bytes;             /* payload bytes that entered the link (sent) */
    uint64_t bytes_delivered;
    uint64_t max_queue_bytes;   /* highest backlog seen, in bytes */
} sim_link_stats;

/* Zeroes p: an ideal link (no delay, no limit, no impairment). */
void sim_link_params_init(sim_link_params *p);

/* ---------------------------------------------------------------- middleboxes */

/* A datagram about to enter a link. A middlebox may change any field (len up to
 * TERN_MAX_DATAGRAM). */
typedef struct sim_packet {
    tern_addr from, to;
    size_t len;
    uint8_t data[TERN_MAX_DATAGRAM];
} sim_packet;

enum { SIM_DROP = 0, SIM_PASS = 1 };

/* Sees a datagram before it enters a link; returns SIM_PASS or SIM_DROP. It may rewrite the
 * packet, and may inject more with sim_transmit (those skip every middlebox) or sim_inject. */
typedef int (*sim_middlebox_fn)(void *user, sim *s, uint64_t now, sim_packet *pkt);

/* ---------------------------------------------------------------- trace */

typedef enum sim_trace_kind {
    SIM_TR_SEND,      /* a node emitted a datagram (or sim_transmit was called) */
    SIM_TR_DROP,      /* dropped; reason says why */
    SIM_TR_DELIVER,   /* handed to recv */
    SIM_TR_EXPIRE,    /* expire called on a node (from/to unset) */
} sim_trace_kind;

typedef struct sim_trace_event {
    sim_trace_kind kind;
    uint64_t now;
    const char *reason;       /* drops: "loss", "queue", "blackhole", "mtu", "middlebox",
                                 "unroutable", "closed" */
    const tern_addr *from, *to;
    const uint8_t *data;
    size_t len;
    unsigned node_id;         /* expire: the node; others: 0 */
} sim_trace_event;

typedef void (*sim_trace_fn)(void *user, const sim_trace_event *ev);

typedef struct sim_stats {
    uint64_t steps;            /* items processed (arrivals + expiries) */
    uint64_t datagrams_sent;   /* by nodes and sim_transmit */
    uint64_t deliveries;
    uint64_t expiries;
    uint64_t injected;         /* sim_inject */
    uint64_t unroutable;       /* arrivals at an address no node holds */
    uint64_t dropped_middlebox; /* dropped by the global middlebox (before any link) */
} sim_stats;

/* ---------------------------------------------------------------- the simulator */

/* Creates an empty simulation at time 0 whose every random choice derives from seed. NULL on
 * out-of-memory. */
sim *sim_new(uint64_t seed);
/* Frees the simulation, its links and in-flight packets. The nodes' own objects are the
 * caller's. */
void sim_del(sim *s);

uint64_t sim_now(const sim *s);
uint64_t sim_seed(const sim *s);
/* An independent seed for stream (e.g. a node number) derived from the simulation's seed; use it
 * with tt_rng_seed for a node's tern_rand_fn so endpoints are deterministic too. */
uint64_t sim_derive_seed(const sim *s, uint64_t stream);

/* Registers node (with its ops; both must outlive the sim or sim_node_remove) at addr. The node
 * is polled for sends at the next step. Returns NULL on out-of-memory or when addr is taken. */
sim_node *sim_add_node(sim *s, const sim_node_ops *ops, void *node, const tern_addr *addr);
/* Gives the node one more address. SIM_ERR_INVALID when another node holds it. */
int sim_node_add_addr(sim *s, sim_node *n, const tern_addr *addr);
/* Takes an address away (datagrams to it become unroutable); SIM_ERR_INVALID if not n's. */
int sim_node_del_addr(sim *s, sim_node *n, const tern_addr *addr);
/* Unregisters a node and frees the handle; its addresses become unroutable. Safe to call from
 * inside another node's callback, but not from the node's own. */
void sim_node_remove(sim *s, sim_node *n);
/* Marks a node for a send poll and a deadline refresh at the next step (use inside a run after
 * touching a node from outside its own callbacks). */
void sim_node_wake(sim *s, sim_node *n);
/* The node registered at addr, or NULL. */
sim_node *sim_node_at(const sim *s, const tern_addr *addr);
void *sim_node_ptr(const sim_node *n);
/* Numbers from 1 in order of sim_add_node. */
unsigned sim_node_id(const sim_node *n);
/* The node's first address. */
const tern_addr *sim_node_addr(const sim_node *n);

/* Sets the parameters used by every (from, to) pair with no explicit link, including pairs that
 * already carried traffic under the old default. */
void sim_set_default_link(sim *s, const sim_link_params *p);
/* The link from address `from` to address `to` (to == NULL: to any address), created with p, or
 * updated to p when it exists (p == NULL: created with the default parameters). Links are chosen
 * per datagram, most specific first: (from addr, to addr), (from node, to addr), (from addr, any),
 * (from node, any), then a per-pair link with the default parameters. NULL on out-of-memory. */
sim_link *sim_link_set(sim *s, const tern_addr *from, const tern_addr *to,
                       const sim_link_params *p);
/* The link from every address of node to `to` (NULL: any address); as sim_link_set. */
sim_link *sim_link_set_node(sim *s, const sim_node *from, const tern_addr *to,
                            const sim_link_params *p);
/* Convenience: sim_link_set both ways with the same parameters; returns the from->to link. */
sim_link *sim_link_set_both(sim *s, const tern_addr *a, const tern_addr *b,
                            const sim_link_params *p);
/* Changes a link's parameters from now on (packets in flight keep their schedule). */
void sim_link_set_params(sim_link *l, const sim_link_params *p);
const sim_link_params *sim_link_get_params(const sim_link *l);
/* The stream the link models ended (a TCP reset, a NAT dropping the connection): every datagram
 * in flight on it is dropped (dropped_closed) and its serializer is idle. Datagrams sent later
 * travel as on a new stream. Call tern_endpoint_stream_closed on the nodes as their drivers
 * would. */
void sim_link_close(sim_link *l);
/* Schedules a one-off blackhole on the link for [from_ns, until_ns). SIM_ERR_NOMEM. */
int sim_link_blackhole(sim_link *l, uint64_t from_ns, uint64_t until_ns);
/* 1 when the link passes nothing at time t (periodic or scheduled blackhole). */
int sim_link_is_down(const sim_link *l, uint64_t t);
const sim_link_stats *sim_link_get_stats(const sim_link *l);
/* The link a datagram from -> to would take now (creating the per-pair default link). */
sim_link *sim_link_lookup(sim *s, const tern_addr *from, const tern_addr *to);
/* Sums the stats of every link. */
void sim_total_link_stats(const sim *s, sim_link_stats *out);
void sim_get_stats(const sim *s, sim_stats *out);

/* A middlebox for every datagram (before the link is chosen, so a rewrite changes the link), or
 * NULL to remove it. */
void sim_set_middlebox(sim *s, sim_middlebox_fn fn, void *user);
/* A middlebox for one link (after the global one, once the link is chosen). */
void sim_link_set_middlebox(sim_link *l, sim_middlebox_fn fn, void *user);

/* Sends a datagram from `from` to `to` now as if a node had sent it (through the middleboxes,
 * unless called from one, and through the link). SIM_ERR_INVALID when len > TERN_MAX_DATAGRAM. */
int sim_transmit(sim *s, const tern_addr *from, const tern_addr *to, const uint8_t *data,
                 size_t len);
/* Delivers a datagram (forged, spoofed, replayed) to the node at `to` at time at (>= now;
 * earlier means now), bypassing links and middleboxes. SIM_ERR_INVALID, SIM_ERR_NOMEM. */
int sim_inject(sim *s, uint64_t at, const tern_addr *from, const tern_addr *to,
               const uint8_t *data, size_t len);

/* Called for every send, drop, delivery and expiry. NULL to remove. */
void sim_set_trace(sim *s, sim_trace_fn fn, void *user);
/* A 64-bit hash of the whole event trace so far (kind, time, addresses, bytes): equal hashes
 * mean identical runs. */
uint64_t sim_trace_hash(const sim *s);

/* Runs every item up to and including time t, then sets the clock to t (t < now: nothing).
 * Returns SIM_OK or a negative SIM_ERR_*. */
int sim_run_until(sim *s, uint64_t t);
/* Runs while cond(arg) returns non-zero, checking it before every item, up to t_max. Returns
 * SIM_OK when cond turned 0 (the clock stays at that moment), SIM_TIMEOUT when t_max came first
 * (clock = t_max), or a negative SIM_ERR_*. */
int sim_run_while(sim *s, int (*cond)(void *arg), void *arg, uint64_t t_max);
/* Runs until no datagram is in flight and no node has anything to send (timers may remain),
 * up to t_max. SIM_OK, SIM_TIMEOUT or SIM_ERR_*. */
int sim_run_until_quiet(sim *s, uint64_t t_max);
/* With on (the default), every sim_run_* call starts by polling every node for sends and
 * deadlines, so calls into nodes between runs need no sim_node_wake. Turn off for runs with
 * thousands of nodes driven in tiny time slices, and wake nodes yourself. */
void sim_set_auto_wake(sim *s, int on);
/* The error message of the last failed run ("" when none). */
const char *sim_error(const sim *s);
/* Limits for the stuck detector: a node expired more than expiries times at one instant, or more
 * than steps items at one instant in all. Defaults 1000 and 10,000,000. */
void sim_set_stall_limits(sim *s, uint64_t expiries, uint64_t steps);
/* Ends a single sim_run_* call with SIM_ERR_STUCK after this many items (catches a timer that
 * creeps forward by a nanosecond at a time). Default 200,000,000; 0 = unlimited. */
void sim_set_step_budget(sim *s, uint64_t items);

#endif
