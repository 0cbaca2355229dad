/*
 * Internal layout of endpoints and connections, and the calls between the core's modules.
 * Nothing here is public.
 *
 * Modules and the direction of their calls (a module calls those below it, never those above;
 * what happened below is reported up by return values and out-parameters):
 *
 *   endpoint.c      datagrams in (tern__rx), the send loop, the timers, stateless replies
 *     -> handshake.c        long-header packets: Initial, Response, Retry, Reject
 *     -> conn.c, conn_rx.c, conn_tx.c   a connection's life, packets in and out, its timer
 *          -> path.c, path_probe.c, path_punch.c   paths, probes, hole punching
 *          -> pmtu.c        path MTU discovery, the size of packets (tern__conn_max_payload)
 *          -> flow.c, flow_send.c, flow_recv.c     flows, the memory budget
 *          -> recovery.c    sent packets, ACKs, loss, RTT, congestion control
 *               -> flow_send.c / flow_recv.c: a packet's frames acknowledged or lost
 *
 * The edges that still go up, each a service with no knowledge of its caller:
 *   - tern__ep_mark_send (endpoint.c: the connection has something to send) and
 *     tern__conn_update_timer (conn.c: re-arm the timer from every module's deadline) are called
 *     by every module after it changed what is due;
 *   - tern__conn_seal (conn_tx.c) seals the probes that path_probe.c and pmtu.c build;
 *   - handshake.c creates, establishes and ends connections (tern__conn_new, _established,
 *     _terminate, _install_keys, _free); path_punch.c creates peer connections.
 * Recovery and the flows depend on no conn file (they size packets by pmtu.c).
 */
#ifndef TERN_CORE_CONN_H
#define TERN_CORE_CONN_H

#include "core/crypto.h"
#include "core/flow.h"
#include "core/handshake.h"
#include "core/noise.h"
#include "core/packet.h"
#include "core/pmtu.h"
#include "core/util.h"
#include "tern/tern.h"

#define TERN__STATELESS_QUEUE 64
#define TERN__STATELESS_MAX 64     /* bytes: Retry, Reject, VN and reset all fit */
#define TERN__MAX_PONGS 4
#define TERN__RETRY_TOKEN_LIFETIME (10ull * TERN_NS_PER_S)
#define TERN__MAX_RETRIES 3
#define TERN__ERR_RATE 10  /* stateless error replies per second per source */
#define TERN__ERR_BURST 20
#define TERN__SRC_MAX 4096 /* sources each per-source limit tracks at once (base/rate.h) */

/* A network path: the pair of addresses a connection's packets travel between, directly or
 * through a relay (then remote is the relay and every packet is wrapped with our channel). */
typedef struct tern__path {
    tern_addr local, remote;
    uint8_t relayed;
    uint8_t channel[TERN_RELAY_CHANNEL_LEN];
    uint64_t rx_bytes;     /* bytes received on the path */
    uint64_t tx_bytes;     /* bytes sent on the path */
    int validated;         /* the peer proved it receives at remote: 3x limit lifted */
    uint32_t tx_dgrams;    /* datagrams sent on the path (punches included) */
    uint8_t handed;        /* handed to us (an introduction's candidate, a punch's source): the
                              probe allowance (settings.probe_tries) applies besides 3x */
    uint64_t await_since;  /* active path: when the oldest ack-eliciting packet sent on it since
                              it last heard from the peer went out (0: none waits) */
    uint8_t chosen;        /* the application named this address (tern_endpoint_connect_opts):
                              like the server of tern_endpoint_connect it may get packets before
                              it answers, without the probe allowance, and is probed for as long
                              as the connection lives (at backed-off gaps) */
    uint8_t closed;        /* a stream the driver reported ended (tern_endpoint_stream_closed)
                              that we cannot reopen: a server's stream from a client. Nothing
                              more goes there; the client comes back on a new one or on UDP */
} tern__path;

/* A stream path: remote is a TCP or TLS address; the driver frames our packets onto that
 * connection, which delivers them reliably and in order (docs/protocol.md, "Stream paths"). */
static inline int tern__path_is_stream(const tern__path *p)
{
    return tern_addr_is_stream(&p->remote);
}

/* A path that delivers every packet, in order, or ends: a direct stream. (A relay reached over a
 * stream forwards onwards over whatever reaches the other peer, UDP perhaps: not reliable.) The
 * stream rules of recovery and congestion control apply to reliable paths only. */
static inline int tern__path_is_reliable(const tern__path *p)
{
    return tern__path_is_stream(p) && !p->relayed;
}

/* A fallback path: through a relay or over a stream. A client prefers any direct UDP path that
 * validates, and comes back to its fallback when that path goes silent. */
static inline int tern__path_is_fallback(const tern__path *p)
{
    return p->relayed || tern__path_is_stream(p);
}

/* Peer to peer and migration (path.c): the candidate paths of a connection besides the active
 * one, how each is being probed, and what the hole punching of an introduction needs. */
#define TERN__MAX_PATHS 12 /* the peer's 8 candidates, the relay, addresses learned on the way */
#define TERN__MAX_EXPECTS 64
#define TERN__BG_PROBE_MAX (5 * TERN_NS_PER_S) /* background probing of a relayed connection */
/* background probing of UDP while a stream carries the connection: a network that blocks UDP
 * tends to stay so (a padded probe every 30 s is about 40 bytes/s), and UDP is back in use
 * within 30 s of answering again */
#define TERN__STREAM_PROBE_MAX (30 * TERN_NS_PER_S)
#define TERN__FALLBACK_MIN (1 * TERN_NS_PER_S) /* a direct path silent this long (or 3 PTO) */
#define TERN__RELAY_KEEPALIVE (20 * TERN_NS_PER_S) /* a relay route in reserve is refreshed */
#define TERN__RESP_BURST 8                      /* PATH_RESPONSEs a candidate path may draw at once */
#define TERN__RESP_GAP (50 * TERN_NS_PER_MS)    /* and then one per this */

enum { TERN__CAND_PROBING = 0, TERN__CAND_VALID = 1, TERN__CAND_FAILED = 2 };

typedef struct tern__cand {
    tern__path path;
    uint8_t state;         /* TERN__CAND_* */
    uint8_t learned;       /* seen as the source of the peer's packets, not told */
    uint8_t initial_due;   /* handshake: the Initial (client) or the Response (server, a copy of
                              the Initial came from there) must go there */
    uint8_t held;          /* a probe waits there for the anti-amplification budget */
    tern__bucket resp;     /* PATH_RESPONSEs it may still draw (TERN__RESP_BURST, TERN__RESP_GAP) */
    uint8_t challenge_due; /* a PATH_CHALLENGE must go there */
    uint8_t response_due;  /* a PATH_RESPONSE must go there */
    uint8_t challenged;    /* a challenge went out */
    uint64_t challenge;    /* data of the challenges sent there (fixed per candidate) */
    uint64_t response;     /* data to echo */
    uint64_t next_probe;   /* when the next Initial or challenge goes there */
    uint64_t gap;          /* between probes now */
    uint32_t probes;
} tern__cand;

typedef struct tern__p2p {
    tern__cand cands[TERN__MAX_PATHS];
    size_t n;
    int probing;            /* introduced peers: probe the candidates */
    int punch_match;        /* client handshake: punches with punch_tag add candidates */
    uint8_t punch_tag[16];
    int has_relay, relay_added;
    tern_relay_route relay;
    uint64_t relay_at;      /* client handshake: add the relay then */
    uint64_t interval, probe_until;
    int latest;             /* server: the candidate the peer's newest packet came on, or -1 */
    uint64_t relay_ka_next; /* client on a direct path: next challenge through the relay */
    uint64_t silent_next;   /* server on a silent direct path: next challenge through the relay */
    uint64_t fallbacks;     /* moves from a silent direct path to the relay */
    tern__bucket np;        /* new unvalidated source addresses it may still take on
                               (ep->new_paths) */
    uint32_t n_punch_learned; /* punch sources given the probe allowance */
    /* tern_endpoint_connect_opts: the stream route (a fallback like the relay; the client's
     * Initial goes there at stream_at unless UDP answered first) */
    int has_stream, stream_added;
    tern_addr stream_local, stream_remote;
    uint64_t stream_at;
} tern__p2p;

/* Client-driven migration (migrate.c): validating the path tern_conn_migrate moved the client
 * to. The new path carries the connection at once; a PATH_CHALLENGE (padded to the datagram
 * size) goes on it and is repeated at doubling gaps until the peer's PATH_RESPONSE proves the
 * path both ways, or TERN__MIG_TRIES went unanswered. */
#define TERN__MIG_TRIES 8
typedef struct tern__mig {
    uint64_t challenge;    /* data of the challenge for the current move (fresh per move) */
    uint8_t challenge_due; /* a challenge must go out on the active path */
    uint8_t validating;    /* the current move's path has not answered yet */
    uint32_t tries;        /* challenges sent for it */
    uint64_t next_try;     /* when the challenge goes again (TERN_TIME_NEVER: not) */
    uint64_t gap;          /* between challenges now (doubles, at most max_backoff) */
} tern__mig;

/* A pending tern_endpoint_expect_peer. */
typedef struct tern__expect {
    uint8_t peer_pub[TERN_KEY_LEN];
    uint8_t punch_tag[16];
    tern_addr local;
    tern_peer_target t;
    uint64_t next_punch, until;
    uint32_t punches;       /* punches sent to each candidate (they count in its allowance) */
} tern__expect;

/* The datagram being processed: what is known of it besides its bytes. tern_endpoint_recv
 * builds it once and passes it down (handshake, connection receive, frames, paths), so no
 * per-datagram fact is parked in the endpoint or the connection. It lives on the stack for the
 * one datagram. */
typedef struct tern__rx {
    uint64_t now;
    const tern_addr *local, *remote;
    int relayed;            /* it came through a relay ... */
    const uint8_t *channel; /* ... on this channel (TERN_RELAY_CHANNEL_LEN bytes; NULL: direct) */
    /* connection receive (conn_rx.c, written by path.c): the candidate path it came on, -1 the
     * active path, -2 a new path there was no room or allowance for */
    int cand;
    int relay_challenged;   /* client: it carried a PATH_CHALLENGE through the relay (path.c) */
} tern__rx;

typedef struct tern__dgram {
    struct tern__dgram *next;
    size_t len;
    uint8_t data[];
} tern__dgram;

/* The groups of a connection's state, one per module. The module named in each comment writes
 * the group; the others only read it (exceptions are named). */

/* Keys (conn.c installs them, conn_tx.c and conn_rx.c rotate them on key updates; handshake.c
 * writes aead and integrity_only as negotiated, before tern__conn_install_keys). */
typedef struct tern__keys {
    tern__aead tx, rx;
    int have;
    uint8_t aead;
    uint8_t integrity_only;
    /* key update (docs/protocol.md 2.4): the key phase bit of each direction */
    int tx_phase, rx_phase;
    uint64_t tx_phase_packets;  /* sent under the current tx key */
    uint64_t rx_phase_first;    /* first packet number received under the current rx key */
} tern__keys;

/* What the peer is and told us in the handshake (handshake.c; conn.c removes the reset token
 * from the endpoint's map when the connection is freed). */
typedef struct tern__peer {
    uint8_t static_pub[TERN_KEY_LEN];
    int known;
    uint8_t reset_token[TERN__RESET_TOKEN_LEN];
    int has_reset_token;
    int in_reset_map;
    /* its transport parameters */
    uint64_t max_udp_payload;
    uint64_t flow_window, max_flows, max_ack_delay;
} tern__peer;

/* Receiving (conn_rx.c). */
typedef struct tern__conn_rx {
    uint64_t last;          /* when the last authenticated packet arrived (idle timeout) */
    tern__replay replay;    /* packet numbers seen */
    int confirmed;          /* client: the server has seen our 1-RTT packets */
} tern__conn_rx;

/* Transmitting (conn_tx.c; hs_done_pending is set by conn.c when established and again by
 * recovery.c when the packet carrying it is lost; path_response* are set by path.c). */
typedef struct tern__conn_tx {
    uint64_t next_pn;
    uint64_t last;             /* when the last packet went out (keep-alive) */
    uint64_t pacer_wake;       /* data waits for the pacer until then (TERN_TIME_NEVER: not) */
    int hs_done_pending;       /* server: HANDSHAKE_DONE must go out */
    int path_response_due;     /* a PATH_RESPONSE goes out on the active path */
    uint64_t path_response;
} tern__conn_tx;

/* Liveness: keep-alive PINGs and PONGs (conn.c arms them on its timer, conn_tx.c sends them,
 * conn_rx.c queues PONGs and takes the answers; handshake.c sets idle_timeout as negotiated). */
typedef struct tern__live {
    uint64_t idle_timeout;
    uint64_t ping_id;          /* last PING id sent */
    uint64_t ping_sent_at;
    int ping_outstanding;
    int ping_pending;          /* a PING must go out */
    uint64_t ping_retx_at;
    uint64_t ping_backoff;
    uint64_t pongs[TERN__MAX_PONGS];
    size_t n_pongs;
} tern__live;

/* Outgoing datagrams (conn.c queues them, conn_tx.c sends them). */
typedef struct tern__dgramq {
    tern__dgram *head, *tail;
    size_t len;
} tern__dgramq;

/* Closing (conn.c; conn_rx.c and conn_tx.c count and re-arm the CLOSE packets). */
typedef struct tern__close {
    uint64_t space, code;
    uint8_t reason[TERN__MAX_REASON_LEN];
    size_t reason_len;
    int pending;
    int sends;
    uint64_t deadline;
    int reported;
} tern__close;

/* The endpoint's lists and per-source count (endpoint.c; conn.c unlinks on free). */
typedef struct tern__link {
    tern_conn *send_next;
    int in_send_list;
    tern_conn *all_prev, *all_next;
    /* per-source limit: the source (IPv4 address or IPv6 /64) this server connection counts
     * against in the endpoint's by_src table */
    int src_held;
    uint8_t src_key[TERN__SRC_KEY_LEN];
} tern__link;

struct tern_conn {
    tern__heap_item timer; /* first: the heap hands back &conn->timer */
    tern_endpoint *ep;
    void *user_data;
    tern_conn_state state; /* conn.c (handshake.c ends a failed handshake through conn.c) */
    int is_server;
    int exposed;   /* the application holds this handle (callbacks go to it) */

    /* connection IDs (conn.c picks ours, handshake.c learns the peer's) */
    uint8_t local_cid[TERN_CID_LEN];   /* peers send to this */
    uint8_t remote_cid[TERN_CID_LEN];  /* we send to this */

    /* paths (path.c, path_probe.c; handshake.c sets the first one) */
    tern__path path;   /* the active path: where packets go */
    tern__p2p *p2p;    /* candidate paths (allocated when there is more than one path) */
    uint64_t path_moves;
    tern__mig mig;     /* client-driven migration (migrate.c) */

    tern__pmtu pmtu;   /* path MTU discovery (pmtu.c, pmtu.h) */
    tern__hs hs;       /* the handshake (handshake.c, handshake.h) */
    tern__keys keys;
    tern__peer peer;
    tern__conn_rx rx;
    tern__conn_tx tx;
    tern__live live;
    tern__dgramq dq;
    tern__close close;
    tern__link link;
    tern__flows flows; /* flows and the memory budget (flow.c, flow_send.c, flow_recv.c; flow.h) */
    tern__rec rec;     /* loss recovery and RTT (recovery.c; flow.h) */

    tern_conn_stats st; /* every module counts here */
};

typedef struct tern__stateless {
    tern_addr local, remote;
    size_t len;
    uint8_t data[TERN__STATELESS_MAX];
} tern__stateless;

struct tern_endpoint {
    tern__alloc alloc;
    tern_rand_fn rand;
    void *rand_user;
    tern_settings s;
    tern_callbacks cb;
    void *user_data;
    int is_server;
    tern_keypair static_key;
    uint8_t key_hint[TERN__KEY_HINT_LEN]; /* names our static key in Initials and Rejects */
    uint8_t mac1_key[32];   /* Initials to us carry mac1 under this key */
    uint8_t cookie_key[32]; /* retry tokens */
    uint8_t reset_key[32];  /* stateless reset tokens, derived from the static key */
    int aes_hw;

    tern__map by_cid;     /* local CID -> conn */
    tern__map by_initial; /* server: client's Initial DCID -> its conn, half-open or
                             established (a late copy over the other transport is ignored) */
    tern__map by_reset;   /* peer's reset token -> conn */
    tern__map by_src;     /* server: source key -> number of connections from it (a count
                             stored as the value; an entry lives while the count is above 0) */
    tern__heap timers;
    tern__srclim hs_limit;  /* server: handshakes per source (handshake_rate, handshake_burst) */
    tern__srclim err_limit; /* stateless error replies per source (TERN__ERR_RATE, _BURST) */
    tern__rate new_paths;   /* per connection: new_paths_per_s, bursts of twice that */

    tern_conn *send_head, *send_tail;
    tern_conn *all;

    tern__stateless sq[TERN__STATELESS_QUEUE];
    size_t sq_head, sq_len;

    /* peer to peer: expectations (target side) and client handshakes that match punches */
    tern__expect *expects; /* TERN__MAX_EXPECTS entries once the first is made */
    size_t n_expects;
    uint64_t expect_deadline;
    size_t n_punch_match;

    tern_endpoint_stats st;
};

/* endpoint.c */
void tern__ep_rand(tern_endpoint *ep, void *dst, size_t len);
void tern__ep_mark_send(tern_endpoint *ep, tern_conn *c);
int tern__ep_queue_stateless(tern_endpoint *ep, const tern_addr *local, const tern_addr *remote,
                             const uint8_t *data, size_t len);
/* A stateless reply to the datagram being processed (queued as above); TERN_ERR_IGNORED when it
 * came through a relay: no stateless replies through a relay. */
int tern__ep_reply_stateless(tern_endpoint *ep, const tern__rx *rx, const uint8_t *data,
                             size_t len);
void tern__key_hint(const uint8_t pub[TERN_KEY_LEN], uint8_t hint[TERN__KEY_HINT_LEN]);
void tern__mac1_key(const uint8_t pub[TERN_KEY_LEN], uint8_t key[32]);
void tern__reset_token(const tern_endpoint *ep, const uint8_t cid[TERN_CID_LEN],
                       uint8_t token[TERN__RESET_TOKEN_LEN]);
/* Server, before any work for a new handshake from remote: TERN_OK, or TERN_ERR_LIMIT when it
 * must be refused (memory above 7/8 of max_memory, or max_conns_per_ip reached; counted). */
int tern__ep_admit(tern_endpoint *ep, const tern__rx *rx);
/* Counts the new server connection c against the source of rx (released by tern__conn_free).
 * TERN_ERR_NOMEM. */
int tern__ep_src_hold(tern_conn *c, const tern__rx *rx);
void tern__ep_src_release(tern_conn *c);

/* handshake.c */
int tern__hs_client_start(tern_conn *c, uint64_t now);
int tern__hs_recv_long(tern_endpoint *ep, const tern__rx *rx, const uint8_t *pkt, size_t len);
int tern__hs_write(tern_conn *c, uint8_t *out, size_t cap);
void tern__hs_on_timer(tern_conn *c, uint64_t now);

/* conn.c, conn_rx.c, conn_tx.c */
tern_conn *tern__conn_new(tern_endpoint *ep, int is_server, uint64_t now);
void tern__conn_free(tern_conn *c);
int tern__conn_recv_short(tern_endpoint *ep, tern__rx *rx, const uint8_t *pkt, size_t len);
int tern__conn_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const tern__path **via);
int tern__conn_seal(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                    size_t frames_len);
void tern__conn_on_timer(tern_conn *c, uint64_t now);
void tern__conn_update_timer(tern_conn *c);
void tern__conn_established(tern_conn *c, uint64_t now);
void tern__conn_terminate(tern_conn *c, uint64_t now, int err, uint64_t code, const uint8_t *reason,
                          size_t reason_len, int silent);
int tern__conn_install_keys(tern_conn *c, const uint8_t tx_secret[32], const uint8_t rx_secret[32]);

/* path.c */
int tern__path_is(const tern__path *p, const tern_addr *remote, int relayed,
                  const uint8_t *channel);
void tern__p2p_free(tern_conn *c);
/* The active path changed: counts the move, re-arms the timer, tells the application. */
void tern__path_moved(tern_conn *c, uint64_t now);
int tern__p2p_rx_path(tern_conn *c, tern__rx *rx);
void tern__p2p_on_rx_done(tern_conn *c, const tern__rx *rx, int newest, int probing_only);
void tern__p2p_on_challenge(tern_conn *c, tern__rx *rx, uint64_t data);
int tern__path_may_send(const tern_conn *c, const tern__path *p, size_t n);
int tern__p2p_hs_copy(tern_conn *c, const tern__rx *rx, size_t len);
void tern__p2p_hs_adopt(tern_conn *c, tern__rx *rx);
void tern__p2p_rx_bytes(tern_conn *c, int i, size_t len);
void tern__p2p_on_response(tern_conn *c, tern__rx *rx, uint64_t data);
int tern__p2p_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const tern__path **via);
uint64_t tern__p2p_deadline(const tern_conn *c);
void tern__p2p_on_timer(tern_conn *c, uint64_t now);
void tern__p2p_client_response(tern_conn *c, const tern__rx *rx);
void tern__p2p_server_attach(tern_conn *c, uint64_t now);
void tern__p2p_established(tern_conn *c, uint64_t now);
int tern__p2p_on_punch(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                       const tern_addr *remote, const uint8_t *data, size_t len);
void tern__expect_on_timer(tern_endpoint *ep, uint64_t now);
int tern__p2p_is_peer_handshake(const tern_conn *c);

/* migrate.c */
/* The PATH_CHALLENGE of a client migration, when one is due, sealed into out; 0 when none. */
int tern__mig_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap);
uint64_t tern__mig_deadline(const tern_conn *c);
void tern__mig_on_timer(tern_conn *c, uint64_t now);
/* A PATH_RESPONSE on the active path: 1 when it answered the migration's challenge. */
int tern__mig_on_response(tern_conn *c, uint64_t data);
/* Server: the active path moved from old to the path the peer's packets now come on. */
void tern__mig_peer_moved(tern_conn *c, const tern__path *old, uint64_t now);

/* recovery.c */
int tern__rec_init(tern_conn *c, uint64_t now);
void tern__rec_free(tern_conn *c);
int tern__rec_reserve(tern_conn *c, uint64_t pn);
void tern__rec_on_sent(tern_conn *c, const tern__sent *rec, uint64_t now);
int tern__rec_on_ack(tern_conn *c, const tern__ack_frame *f, uint64_t now);
uint64_t tern__rec_timer(const tern_conn *c);
void tern__rec_on_timer(tern_conn *c, uint64_t now);
uint64_t tern__rec_pto(const tern_conn *c);
void tern__rec_path_changed(tern_conn *c, uint64_t now);
/* The stream that carried the packets marked stream ended: those outstanding are lost (their
 * frames go again on the next path); nothing else changes. */
void tern__rec_stream_lost(tern_conn *c, uint64_t now);
double tern__rec_loss_rate(const tern_conn *c);
/* How long after it was sent a packet is declared lost at the latest while later ones are
 * acknowledged: the time threshold, 9/8 of the larger of the smoothed and the latest RTT (the
 * packet threshold may find it sooner). FEC's ADAPTIVE repair rate reckons with it (fec.c). */
uint64_t tern__rec_loss_delay(const tern_conn *c);
void tern__rec_rtt_init(tern__rtt *r, uint64_t initial);
/* A new RTT sample (an ACK's, a PONG's) into c->rec.rtt. */
void tern__rec_rtt_sample(tern_conn *c, uint64_t sample);
/* srtt + max(4 rttvar, 1 ms): the PTO without the peer's ACK delay (see tern__rec_pto). */
uint64_t tern__rec_rtt_pto(const tern_conn *c);
/* Tells the application (on_network) when bandwidth, RTT or loss moved by a tenth. */
void tern__rec_network_changed(tern_conn *c);
/* target_rate.c: calls on_target_rate when the target moved (after each received packet, where
 * the flows' events are delivered too). */
void tern__target_events(tern_conn *c);
/* Bytes our sending flows hold that have not left yet (not cut into packets, or waiting for a
 * retransmission): O(flows), whatever the number of messages queued. */
uint64_t tern__target_unsent(const tern_conn *c);

/* flow.c, flow_send.c, flow_recv.c */
/* Allocation for a connection, counted against its conn_memory budget. With enforce, NULL when
 * the budget would be passed (tern__conn_mem_err() then says TERN_ERR_BUDGET); otherwise only
 * the endpoint's max_memory and the hook can fail it (TERN_ERR_NOMEM). */
void *tern__conn_alloc(tern_conn *c, size_t size, int enforce);
void *tern__conn_calloc(tern_conn *c, size_t size, int enforce);
void tern__conn_dealloc(tern_conn *c, void *p, size_t size);
/* Would size more bytes pass the connection's budget? */
int tern__conn_mem_over(const tern_conn *c, size_t size);
/* Would size more bytes queued by our application pass its share (3/4) of the budget? */
int tern__conn_send_over(const tern_conn *c, size_t size);
/* Why the last failed tern__conn_alloc(c, size, 1) failed: TERN_ERR_BUDGET or TERN_ERR_NOMEM. */
int tern__conn_mem_err(const tern_conn *c, size_t size);
tern__sflow *tern__sflow_find(const tern_conn *c, uint64_t id);
void tern__sflow_free(tern_conn *c, tern__sflow *f);
void tern__flow_config_defaults(tern_flow_config *cfg);
int tern__flow_on_frame(tern_conn *c, uint64_t type, const uint8_t **p, const uint8_t *end);
void tern__flow_on_acked(tern_conn *c, const tern__sent_entry *e);
void tern__flow_on_lost(tern_conn *c, const tern__sent_entry *e, uint64_t now);
uint8_t *tern__flow_write_control(tern_conn *c, uint8_t *p, const uint8_t *end, tern__sent *rec);
uint8_t *tern__flow_write_data(tern_conn *c, uint64_t now, uint8_t *p, const uint8_t *end,
                               tern__sent *rec);
int tern__flow_has_data(tern_conn *c, uint64_t now);
int tern__flow_has_control(const tern_conn *c);
void tern__flows_reap(tern_conn *c);
void tern__flows_free(tern_conn *c);

#endif
