/*
 * tern core: the protocol as a sans-I/O state machine.
 *
 * The core never touches a socket, a clock or a thread. The caller (the driver in src/driver,
 * the simulator in tests/sim, or an application's own event loop) does four things:
 *
 *   1. hands every received datagram to tern_endpoint_recv(ep, now, local, remote, bytes);
 *   2. calls tern_endpoint_send(ep, now, ...) until it returns 0, and sends what it returns;
 *   3. asks tern_endpoint_next_deadline(ep) when it next needs to run;
 *   4. at that time calls tern_endpoint_handle_expiry(ep, now), then send again.
 *
 * `now` is always a monotonic timestamp in nanoseconds chosen by the caller. Allocation and
 * randomness go through hooks, so a simulation with a seed is exactly repeatable.
 *
 * One endpoint can both accept connections (is_server) and open them (tern_endpoint_connect),
 * so peers can talk to each other directly. Connections are found by connection ID, not by
 * address. Events reach the application through tern_callbacks.
 */
#ifndef TERN_TERN_H
#define TERN_TERN_H

#include <stddef.h>
#include <stdint.h>

#include "tern/base.h" /* addresses, hooks, time units, error codes */

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_KEY_LEN 32     /* X25519 public and private keys */
#define TERN_PEER_ID_LEN 32 /* BLAKE2b-256 of a long-term public key */
#define TERN_CID_LEN 8      /* connection IDs on the wire */
#define TERN_MIN_INITIAL_SIZE 1200
#define TERN_MAX_DATAGRAM 1500 /* largest UDP payload tern ever builds */

/* ---------------------------------------------------------------- hooks */

/* malloc/free from libc (the tern_mem and tern_rand_fn hooks are in tern/base.h). */
const tern_mem *tern_mem_default(void);

/* ---------------------------------------------------------------- keys */

typedef struct tern_keypair {
    uint8_t pub[TERN_KEY_LEN];
    uint8_t priv[TERN_KEY_LEN];
} tern_keypair;

/* A fresh X25519 key pair from the OS's randomness. */
int tern_keypair_generate(tern_keypair *kp);
/* The key pair whose private key is priv (clamped as X25519 requires). */
int tern_keypair_from_private(tern_keypair *kp, const uint8_t priv[TERN_KEY_LEN]);
/* A peer's ID: BLAKE2b-256 of its long-term public key (self-certifying). */
void tern_peer_id(const uint8_t pub[TERN_KEY_LEN], uint8_t id[TERN_PEER_ID_LEN]);
/* Wipes the private key. */
void tern_keypair_wipe(tern_keypair *kp);

/* Lower-case hex encode/decode of keys and IDs (64 characters for 32 bytes). */
void tern_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);
int tern_hex_decode(const char *in, uint8_t *out, size_t len);

/* ---------------------------------------------------------------- settings */

enum {
    TERN_AEAD_AUTO = 0,     /* AES-256-GCM where both CPUs have AES instructions, else ChaCha */
    TERN_AEAD_AES256GCM = 1,
    TERN_AEAD_CHACHA20POLY1305 = 2,
};

typedef struct tern_settings {
    uint64_t idle_timeout_ns;      /* close after this long without hearing the peer (30 s) */
    uint64_t keepalive_ns;         /* PING when nothing was sent for this long (15 s; 0 = off) */
    uint64_t handshake_timeout_ns; /* give up a handshake after this long (15 s) */
    uint64_t initial_rtt_ns;       /* RTT assumed before the first sample (333 ms, RFC 9002) */
    uint64_t max_backoff_ns;       /* cap on handshake/probe retransmission backoff (2 s) */
    uint16_t max_udp_payload;      /* datagram size before path MTU discovery (1200) */
    uint8_t no_pmtud;              /* 1: never probe for larger datagrams (path MTU discovery
                                      raises the size to 1472, 1452, 1400 or 1350 bytes where
                                      the path carries it; 0) */
    uint8_t aead;                  /* TERN_AEAD_* preference (AUTO) */
    uint8_t integrity_only;        /* client: ask for authenticated-not-encrypted packets;
                                      server: allow clients that ask (0) */
    /* server side */
    uint32_t max_half_open;        /* half-open handshakes before every Initial needs a retry
                                      token; 0 = always (256) */
    uint32_t max_connections;      /* refuse handshakes past this (100000) */
    uint32_t handshake_rate;       /* handshakes per second per source (an IPv4 address or an
                                      IPv6 /64; 4096 sources tracked at once) (100; 0: no
                                      limit) */
    uint32_t handshake_burst;      /* bucket depth of that rate limit (200) */
    uint32_t max_datagram_queue;   /* queued outgoing datagram frames per connection (1024) */
    /* flows */
    uint32_t flow_window;          /* fragments a peer may have in flight per flow (4096) */
    uint32_t max_flows;            /* flows a peer may have open at once (64) */
    uint64_t send_buffer;          /* bytes queued per flow before tern_flow_send says AGAIN
                                      (32 MiB) */
    uint64_t max_ack_delay_ns;     /* how long a receiver may hold an ACK (25 ms) */
    uint32_t ack_every;            /* ACK at least every this many ack-eliciting packets (2) */
    uint8_t cc;                    /* TERN_CC_* congestion controller (BBR) */
    uint64_t key_update_packets;   /* packets sent under one key before it is updated (2^22;
                                      AES-GCM's confidentiality limit is 2^23) */
    /* anti-amplification on every path (docs/protocol.md 9.6); 0 takes the default */
    uint32_t probe_tries;          /* datagrams (punches, Initials, PATH_CHALLENGE/RESPONSE
                                      packets) an unvalidated address handed to us (a peer's
                                      candidate, a punch's source) may get beyond three times the
                                      bytes it sent us: the first half at the probe interval, the
                                      rest at doubling gaps; then probing it stops (30) */
    uint32_t new_paths_per_s;      /* new unvalidated source addresses one connection takes on
                                      per second, in bursts of twice that (4) */
    /* memory budgets and per-source limits (docs/security.md) */
    uint64_t conn_memory;          /* bytes a peer can make us hold for one connection (its
                                      reassembly buffers, flow state, send and datagram queues,
                                      each allocation counted at its real size): a peer that
                                      sends past it is closed (TERN_ERR_BUDGET), and
                                      tern_flow_send / tern_conn_send_datagram say AGAIN rather
                                      than let our own queue pass 3/4 of it; 0 = unlimited (0;
                                      server profile 1 MiB) */
    uint64_t max_memory;           /* bytes the endpoint ever holds through its mem hook: an
                                      allocation past it fails (that one connection closes), and
                                      above 7/8 of it new handshakes are refused; 0 = unlimited
                                      (0; server profile 2 GiB) */
    uint32_t max_conns_per_ip;     /* server: connections, half-open included, from one IPv4
                                      address or one IPv6 /64; more are refused; 0 = unlimited
                                      (256) */
    /* stream paths (TCP, TLS; docs/protocol.md "Stream paths") */
    uint64_t stream_window;        /* bytes a connection keeps unacknowledged on a stream path:
                                      there the congestion controller and the pacer step aside
                                      for TCP's, and this cap alone bounds what the driver must
                                      buffer for the connection (1 MiB: keeps TCP busy on a
                                      100 Mbit/s, 80 ms mobile path; 0 takes the default) */
} tern_settings;

enum { TERN_CC_BBR = 0, TERN_CC_CUBIC = 1, TERN_CC_NEWRENO = 2 };

void tern_settings_default(tern_settings *s);
/* tern_settings_default with values for a server that faces the internet and does rendezvous and
 * relay rather than bulk transfer (ternd): flow_window 256, max_flows 8, send_buffer 256 KiB,
 * max_datagram_queue 256, conn_memory 1 MiB, max_memory 2 GiB, max_conns_per_ip 256. */
void tern_settings_server_default(tern_settings *s);

/* ---------------------------------------------------------------- handles */

typedef struct tern_endpoint tern_endpoint;
typedef struct tern_conn tern_conn;
typedef struct tern_network_info tern_network_info;
typedef struct tern_flow_progress tern_flow_progress; /* see tern_flow_send */

typedef enum tern_conn_state {
    TERN_CONN_HANDSHAKE = 0, /* client: Initial sent; server: Response sent, address unvalidated */
    TERN_CONN_ESTABLISHED,   /* keys agreed, data may flow */
    TERN_CONN_CLOSING,       /* we closed: answering the peer's packets with CLOSE for a while */
    TERN_CONN_DRAINING,      /* the peer closed or reset: silent until freed */
    TERN_CONN_CLOSED,        /* about to be freed */
} tern_conn_state;

/* Events. Every callback may be NULL. Callbacks may call tern_conn_* functions on the connection
 * they are given, except that after on_conn_free the handle is gone. */
typedef struct tern_callbacks {
    /* Server side: a client completed the handshake (its peer ID is known). Return 0 to accept,
     * or a negative value to refuse (the client gets TERN_ERR_REFUSED). */
    int (*on_accept)(tern_conn *conn, void *user_data);
    /* Either side: the connection can carry data. */
    void (*on_established)(tern_conn *conn, void *user_data);
    /* An unreliable datagram frame arrived. */
    void (*on_datagram)(tern_conn *conn, const uint8_t *data, size_t len, void *user_data);
    /* A PONG answered one of our PINGs; rtt_ns is that sample. */
    void (*on_rtt)(tern_conn *conn, uint64_t rtt_ns, void *user_data);
    /* The connection ended. err says why (TERN_ERR_PEER_CLOSED with the peer's app_code and
     * reason, TERN_ERR_IDLE_TIMEOUT, TERN_ERR_BAD_SERVER_KEY, ...). Called once. */
    void (*on_closed)(tern_conn *conn, int err, uint64_t app_code, const char *reason,
                      size_t reason_len, void *user_data);
    /* The handle is about to be freed; the last callback a connection gets (its flows are gone
     * by then: every tern_flow_send_ref buffer was released before it). */
    void (*on_conn_free)(tern_conn *conn, void *user_data);
    /* A whole message arrived on a flow the peer opened (data is valid during the call). */
    void (*on_message)(tern_conn *conn, uint64_t flow_id, const uint8_t *data, size_t len,
                       void *user_data);
    /* The peer closed its flow and every message of it was delivered or given up. */
    void (*on_flow_closed)(tern_conn *conn, uint64_t flow_id, void *user_data);
    /* Events of our own sending flows, documented with tern_flow_send: the peer acknowledged
     * data or we gave messages up (cumulative counts in p); a refused send would now be taken;
     * a buffer queued with tern_flow_send_ref is no longer referenced. */
    void (*on_flow_acked)(tern_conn *conn, uint64_t flow_id, const tern_flow_progress *p,
                          void *user_data);
    void (*on_flow_writable)(tern_conn *conn, uint64_t flow_id, void *user_data);
    void (*on_flow_release)(tern_conn *conn, uint64_t flow_id, void *token, int delivered,
                            void *user_data);
    /* The network estimate changed noticeably (bandwidth by 10%, RTT by 10%, or loss). */
    void (*on_network)(tern_conn *conn, const tern_network_info *info, void *user_data);
    /* The connection's packets now travel a new path (tern_conn_path says which): after the
     * handshake found a path over several candidates, and when a connection moves, e.g. from
     * the relay to a direct path that validated, or back to the relay when the direct path went
     * silent; on a client that moved itself (tern_conn_migrate), and on a server once the
     * client's new address answered its challenge. Nothing queued is lost in a move. */
    void (*on_path)(tern_conn *conn, void *user_data);
    /* Server side, before on_accept: the client's handshake is done (its key is proven, so
     * only an authenticated peer gets here) and its first packet under the session keys came.
     * Return 1 to hold the decision: that packet is dropped unanswered, the connection stays
     * half-open, and the hook is asked again on the client's next packet (the client repeats
     * until it hears from us); the handshake timeout still ends a connection held that long.
     * Return 0 to go on to on_accept. NULL: never held. For a decision that waits on news from
     * elsewhere: the rendezvous target whose INTRODUCED comes after the initiator's handshake
     * (tern_rdv_client_hold). Counted in tern_endpoint_stats.accepts_held. */
    int (*on_accept_hold)(tern_conn *conn, void *user_data);
    /* Frame-aware delivery (tern_flow_send_msg), receiving side: messages of flow_id were
     * skipped, never to be delivered, because a message they depend on (directly, through a
     * chain, or through their group of pictures) was given up by the sender or expired here.
     * first_msg is the lowest skipped message ID, count how many were skipped by this event.
     * The sender is told too (on_keyframe_request there); an application that carries its own
     * signalling may also pass the request to its encoder itself. */
    void (*on_msg_skipped)(tern_conn *conn, uint64_t flow_id, uint64_t first_msg, uint64_t count,
                           void *user_data);
    /* Frame-aware delivery, sending side: the encoder feeding flow_id should send a keyframe
     * (a message with TERN_MSG_KEYFRAME) as soon as it can, because a message others depend on
     * was lost for good: we gave it up (deadline, retransmission budget, tern_flow_flush) or the
     * receiver skipped frames and asked (a KEYFRAME_REQUEST frame). Repeated requests within
     * one RTT are reported once; one due meanwhile is reported when the RTT has passed, unless
     * a keyframe was queued since. */
    void (*on_keyframe_request)(tern_conn *conn, uint64_t flow_id, void *user_data);
    /* Encoder feedback: the rate an application should produce now (tern_conn_target_rate),
     * in bits per second of message payload, derived from the bandwidth estimate, the queueing
     * delay and the loss rate. Called when it moves by 10% or more; a fall is reported within
     * a few RTTs of the network's. */
    void (*on_target_rate)(tern_conn *conn, uint64_t bps, void *user_data);
} tern_callbacks;

typedef struct tern_endpoint_config {
    int is_server;              /* accept incoming handshakes (needs static_key) */
    int has_static_key;         /* otherwise a fresh anonymous key is made for this endpoint */
    tern_keypair static_key;    /* long-term key: the server's pinned key, a peer's identity */
    tern_settings settings;
    tern_callbacks callbacks;
    void *user_data;            /* handed to every callback */
    const tern_mem *mem;        /* NULL: tern_mem_default() */
    tern_rand_fn rand;          /* NULL: libsodium randombytes_buf */
    void *rand_user;
} tern_endpoint_config;

/* Zeroes cfg and fills cfg->settings with tern_settings_default(). */
void tern_endpoint_config_default(tern_endpoint_config *cfg);

/* Creates an endpoint. Errors: TERN_ERR_INVALID_ARG (server without key), TERN_ERR_NOMEM,
 * TERN_ERR_CRYPTO (libsodium failed to initialise). */
int tern_endpoint_new(const tern_endpoint_config *cfg, uint64_t now, tern_endpoint **out);
/* Frees the endpoint and every connection, wiping key material. No callbacks, except
 * on_flow_release for each tern_flow_send_ref buffer still referenced. */
void tern_endpoint_del(tern_endpoint *ep);

/* ---------------------------------------------------------------- I/O */

/* Hands one received UDP payload to the endpoint. Returns TERN_OK when it was processed, or the
 * negative reason it was dropped (always counted in tern_endpoint_stats; never fatal for the
 * endpoint). */
int tern_endpoint_recv(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                       const tern_addr *remote, const uint8_t *data, size_t len);

/* One datagram produced by tern_endpoint_send: data points into the caller's buffer. */
typedef struct tern_datagram {
    tern_addr local;  /* the local address it must leave from (as given to recv/connect) */
    tern_addr remote;
    uint8_t *data;
    size_t len;
} tern_datagram;

/* Writes up to max_dgrams datagrams into buf (each at most TERN_MAX_DATAGRAM bytes) and describes
 * them in dgrams. Returns how many (0 when nothing is due), or TERN_ERR_BUFFER when buf cannot
 * hold even one. Call until it returns 0. */
int tern_endpoint_send(tern_endpoint *ep, uint64_t now, tern_datagram *dgrams, size_t max_dgrams,
                       uint8_t *buf, size_t buf_len);

/* The earliest time at which tern_endpoint_handle_expiry must run; TERN_TIME_NEVER if none. */
uint64_t tern_endpoint_next_deadline(const tern_endpoint *ep);

/* Runs every timer due at now (retransmissions, keep-alives, timeouts, freeing). */
void tern_endpoint_handle_expiry(tern_endpoint *ep, uint64_t now);

typedef struct tern_endpoint_stats {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
    /* every datagram tern_endpoint_recv drops is counted in exactly one of these: */
    uint64_t drop_truncated, drop_malformed, drop_version, drop_auth, drop_replay;
    uint64_t drop_unknown_cid, drop_rate_limited, drop_ignored;
    /* details: Initials under 1200 bytes (also in drop_truncated); invalid retry tokens (the
     * Initial is then treated as if it had none) */
    uint64_t drop_small_initial, drop_token;
    uint64_t drop_queue_full;       /* stateless replies dropped because their queue was full */
    uint64_t amplification_blocked; /* sends held back by the 3x limit */
    uint64_t handshakes_started, handshakes_completed, handshakes_failed;
    uint64_t retries_sent, resets_sent, resets_received, rejects_sent, version_negotiations_sent;
    uint64_t conns_current, conns_half_open;
    uint64_t mem_current; /* bytes currently allocated through the hook */
    /* anti-amplification on every path (docs/protocol.md 9.6) */
    uint64_t probes_unpadded;  /* PATH_CHALLENGE/RESPONSE packets sent unpadded: a padded one
                                  would have passed the 3x limit */
    uint64_t probes_exhausted; /* candidates (or punch targets) whose probe allowance ran out
                                  unanswered: probing them stopped */
    uint64_t paths_refused;    /* new source addresses not taken on (new_paths_per_s) */
    uint64_t responses_limited;/* PATH_CHALLENGEs left unanswered (per-path response rate) */
    uint64_t initial_copies;   /* copies of a half-open handshake's Initial from another address,
                                  answered there within that address's own 3x budget */
    /* memory budgets and per-source limits */
    uint64_t mem_peak;             /* highest mem_current seen */
    uint64_t mem_refused;          /* allocations refused because of max_memory */
    uint64_t conns_closed_budget;  /* connections closed for passing conn_memory */
    uint64_t conns_closed_nomem;   /* connections closed because an allocation failed */
    uint64_t conns_refused_memory; /* handshakes refused: memory above 7/8 of max_memory */
    uint64_t conns_refused_per_ip; /* handshakes refused: max_conns_per_ip */
    uint64_t sources_current;      /* source addresses (IPv4, IPv6 /64) with a connection */
    uint64_t expects_evicted;      /* expectations (tern_endpoint_expect_peer) replaced by a
                                      newer one because 64 were pending */
    uint64_t accepts_held;         /* packets of handshakes held by on_accept_hold (dropped) */
} tern_endpoint_stats;

void tern_endpoint_get_stats(const tern_endpoint *ep, tern_endpoint_stats *st);

/* ---------------------------------------------------------------- connections */

/* Opens a connection to the server at remote that must hold server_pub. local is the address the
 * datagrams leave from (it is copied into every tern_datagram). Errors: TERN_ERR_NOMEM,
 * TERN_ERR_INVALID_ARG. The handshake reports through on_established or on_closed. */
int tern_endpoint_connect(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                          const tern_addr *remote, const uint8_t server_pub[TERN_KEY_LEN],
                          tern_conn **out);

/* A client connection that races UDP and a stream transport (TCP, or TLS 1.3 for networks
 * that pass only web traffic), as happy eyeballs does: the Initial goes over UDP first, and over
 * the stream stream_after_ns later if UDP has not answered by then (at once when there is no UDP
 * remote). The first path that answers carries the connection. While a stream carries it, UDP
 * keeps being probed in the background and the connection moves back to UDP once UDP answers.
 * On a stream path the core retransmits nothing the stream delivers and leaves congestion
 * control to TCP (docs/mobility.md). */
typedef struct tern_connect_opts {
    tern_addr local, remote;               /* UDP; remote.family TERN_AF_NONE: no UDP */
    tern_addr stream_local, stream_remote; /* transport TCP or TLS; family NONE: no stream */
    uint64_t stream_after_ns;              /* the stream's head start for UDP (250 ms) */
    uint8_t server_pub[TERN_KEY_LEN];
} tern_connect_opts;

/* Zeroes o and sets the default above. */
void tern_connect_opts_default(tern_connect_opts *o);

/* Opens a connection as tern_endpoint_connect does, over UDP, a stream or both (above).
 * Errors: TERN_ERR_NOMEM, TERN_ERR_INVALID_ARG (neither remote, or a stream remote whose
 * transport is UDP). */
int tern_endpoint_connect_opts(tern_endpoint *ep, uint64_t now, const tern_connect_opts *o,
                               tern_conn **out);

/* The driver tells the core that the stream (TCP or TLS connection) between local and remote
 * ended or could not be opened. Packets in flight on it are declared lost and go again on the
 * path that carries the connection next (a reopened stream, UDP, another candidate); a
 * connection left with no path waits for one within its idle timeout. */
void tern_endpoint_stream_closed(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                                 const tern_addr *remote);

/* Client-driven migration (docs/protocol.md, "Migration"): the connection's packets leave from
 * local from now on (a new socket or address after a network change). Everything in flight is
 * sent again on the new path at once (the receiver drops the copies that still arrive by the
 * old one), under a congestion controller and RTT estimate started afresh; flows go on; on_path
 * reports the move before the call returns. A padded PATH_CHALLENGE checks the new path
 * (tern_path_info.validated is 0 until its answer; repeated at doubling gaps, 8 at most); the
 * server validates our new address with its own challenge, within three times the bytes it
 * received from there, and moves to it once it answered. Counted in tern_conn_stats
 * (migrations, migrations_validated). local equal to the current one: TERN_OK, nothing moves.
 * A peer connection's initiator may migrate a direct path (its candidates move along); the
 * target cannot (it is the server side). Errors: TERN_ERR_STATE (server side, not established,
 * or a relayed path: the relay forwards only from the address it registered),
 * TERN_ERR_INVALID_ARG (NULL, no family, or another transport than the path's). */
int tern_conn_migrate(tern_conn *c, uint64_t now, const tern_addr *local);

/* Queues one unreliable datagram frame (at most tern_conn_max_datagram() bytes).
 * Errors: TERN_ERR_STATE (not established), TERN_ERR_TOO_LARGE, TERN_ERR_AGAIN (queue full). */
int tern_conn_send_datagram(tern_conn *c, uint64_t now, const uint8_t *data, size_t len);
size_t tern_conn_max_datagram(const tern_conn *c);

/* Sends a PING; the PONG reports through on_rtt. TERN_ERR_STATE unless established. */
int tern_conn_ping(tern_conn *c, uint64_t now);

/* Closes the connection, telling the peer app_code and reason (at most 256 bytes kept).
 * on_closed(TERN_ERR_LOCAL_CLOSED) follows. TERN_ERR_STATE when already closing. */
int tern_conn_close(tern_conn *c, uint64_t now, uint64_t app_code, const char *reason,
                    size_t reason_len);

tern_conn_state tern_conn_get_state(const tern_conn *c);
tern_endpoint *tern_conn_endpoint(const tern_conn *c);
void tern_conn_set_user_data(tern_conn *c, void *p);
void *tern_conn_get_user_data(const tern_conn *c);
/* The peer's long-term public key and ID; TERN_ERR_STATE before the handshake proved them. */
int tern_conn_peer_key(const tern_conn *c, uint8_t pub[TERN_KEY_LEN]);
int tern_conn_peer_id(const tern_conn *c, uint8_t id[TERN_PEER_ID_LEN]);
const tern_addr *tern_conn_remote(const tern_conn *c);
int tern_conn_is_server(const tern_conn *c);
/* Bytes the connection holds against its conn_memory budget now (reassembly, flow state, send
 * and datagram queues, at their real allocation size). */
size_t tern_conn_memory(const tern_conn *c);

/* ---------------------------------------------------------------- peer to peer */

/* Two peers that a rendezvous server introduced (docs/rendezvous.md) connect to each other
 * directly through their NATs, or through the server's relay, with one ordinary tern connection
 * (docs/protocol.md, section 9). The initiator (the peer that asked for the introduction) calls
 * tern_endpoint_connect_peer; the target calls tern_endpoint_expect_peer and accepts the
 * handshake in on_accept (its endpoint must be is_server, with the static key the server
 * vouched for). Both sides then probe every candidate; the first path that validates carries
 * the handshake; a connection on the relay moves to a direct path as soon as one validates.
 * While direct, the initiator keeps the relay route alive (a challenge through it every 20 s)
 * and moves back to it when the direct path goes silent: its ack-eliciting packets unanswered
 * for 3 PTO (at least 1 s) and two probe timeouts in a row, or the target challenging it through
 * the relay because the target's packets go unanswered; direct paths are then probed again in
 * the background. */

#define TERN_PUNCH_NONCE_LEN 16  /* introduction nonce */
#define TERN_MAX_CANDIDATES 8    /* direct candidates of one peer */

/* A route through a relay: where it is and this peer's channel on it (from the introduction). */
typedef struct tern_relay_route {
    tern_addr addr;
    uint8_t channel[TERN_RELAY_CHANNEL_LEN];
} tern_relay_route;

typedef struct tern_peer_target {
    uint8_t peer_pub[TERN_KEY_LEN];           /* the peer's long-term key, as the server vouched */
    uint8_t nonce[TERN_PUNCH_NONCE_LEN];      /* the introduction's nonce (both sides know it) */
    size_t n_cands;
    tern_addr cands[TERN_MAX_CANDIDATES];     /* the peer's direct candidates (local, public) */
    int has_relay;
    tern_relay_route relay;
    uint64_t relay_after_ns;    /* use the relay when no direct path answered by then (2 s);
                                   0: at once, alongside the direct candidates */
    uint64_t probe_interval_ns; /* between probes of one candidate (200 ms) */
    uint64_t probe_duration_ns; /* direct candidates are probed this long (15 s); after that a
                                   connection stays where it is */
} tern_peer_target;

/* Zeroes t and sets the defaults above. */
void tern_peer_target_default(tern_peer_target *t);

/* Initiator: opens one connection to the peer over all its candidates at once (Initials to
 * every direct candidate, the relay after relay_after_ns); the first path that answers carries
 * it (on_path, then on_established). Learns the peer's addresses from its punches (a peer
 * behind a symmetric NAT shows up from a port nobody could predict). Errors: as
 * tern_endpoint_connect, and TERN_ERR_INVALID_ARG (no candidate and no relay). */
int tern_endpoint_connect_peer(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                               const tern_peer_target *t, tern_conn **out);

/* Target: expects the peer's handshake. Sends punches (small datagrams carrying a MAC of the
 * nonce) to every candidate of the peer for probe_duration_ns, so that its own NAT lets the
 * peer's packets in; the connection the peer then opens (accepted in on_accept, whose
 * tern_conn_peer_key matches t->peer_pub) gets the candidates and relay to probe and move to.
 * An expectation ends when that connection is accepted or after probe_duration_ns.
 * At most 64 expectations are held: a new one past that replaces the oldest (counted in
 * tern_endpoint_stats.expects_evicted). Errors: TERN_ERR_STATE (the endpoint is not is_server),
 * TERN_ERR_NOMEM, TERN_ERR_INVALID_ARG. */
int tern_endpoint_expect_peer(tern_endpoint *ep, uint64_t now, const tern_addr *local,
                              const tern_peer_target *t);

/* The path a connection's packets travel now. */
typedef struct tern_path_info {
    tern_addr remote;   /* where packets go: the peer, or the relay; remote.transport says
                           UDP, TCP or TLS (a stream path) */
    int relayed;        /* 1: through a relay (remote is the relay) */
    int validated;      /* the peer proved it receives there (after tern_conn_migrate: once
                           it answered the challenge on the new path) */
    uint64_t moves;     /* how many times the connection changed path */
    size_t n_cands;     /* candidate paths known */
    size_t n_validated; /* of those, validated */
    uint64_t fallbacks; /* moves from a direct path gone silent back to the relay */
    tern_addr local;    /* where our packets leave from (tern_conn_migrate changes it) */
    /* Silence of the active path, for a driver that moves a connection off a dead network:
     * when the oldest ack-eliciting packet sent on it since the peer was last heard there went
     * out (0: nothing waits for an answer), and how long such a packet may wait before the path
     * counts as silent (3 PTO, at least 1 s; the same rule moves a peer connection back to its
     * relay). Silent: unanswered_since != 0 && now >= unanswered_since + silent_after_ns. */
    uint64_t unanswered_since;
    uint64_t silent_after_ns;
    /* 1: the core itself moves this connection to a fallback path (a relay, a stream) when its
     * direct path goes silent by the rule above (a client connection on a direct path with a
     * relay or stream candidate), so a driver leaves that silence to the core: moving it then
     * (tern_conn_migrate) would start the silence afresh and delay the fallback. */
    int has_fallback;
} tern_path_info;

void tern_conn_path(const tern_conn *c, tern_path_info *info);

/* ---------------------------------------------------------------- flows */

/* A flow is one direction of messages: the side that opens it sends, the peer receives (on
 * on_message). Each flow chooses its delivery; each message has a priority 0 (lowest) to 7. */
enum {
    TERN_FLOW_RELIABLE = 0,   /* every message arrives */
    TERN_FLOW_PARTIAL = 1,    /* a message may be given up after a deadline or a budget of
                                 retransmissions; the receiver is told and stops waiting */
    TERN_FLOW_UNRELIABLE = 2, /* sent once, never retransmitted */
};

typedef struct tern_flow_config {
    uint8_t reliability;      /* TERN_FLOW_* (RELIABLE) */
    uint8_t ordered;          /* 1: in sending order (default); 0: as each message completes */
    uint8_t priority;         /* default message priority, 0..7 (3) */
    uint32_t deadline_ms;     /* PARTIAL/UNRELIABLE: drop a message not delivered by then (0: none) */
    uint32_t max_retransmits; /* PARTIAL: give a fragment up after this many retransmissions
                                 (0: no budget) */
    uint8_t stream;           /* a byte stream: RELIABLE and ordered, and the receiver's
                                 on_message gets the bytes as they arrive in order, without
                                 waiting for (or marking) message boundaries */
    /* forward error correction (docs/protocol.md, "Repair"): repair fragments computed over
     * groups of the flow's fragments (Reed-Solomon, XOR parity for a group that needs one) let
     * the receiver rebuild lost fragments without waiting a round trip */
    uint8_t fec;              /* TERN_FEC_* (OFF) */
    uint8_t fec_group;        /* source fragments per group at most, 1..64 (16); a group also
                                 closes when the flow's queue runs empty (a frame's end) */
    uint8_t fec_repair_pct;   /* FIXED: repair fragments per 100 source fragments, rounded up
                                 per group (25); ADAPTIVE: the most it may use, rounded up per
                                 group (the same default; 50 lets it cover bursts at 3% loss) */
} tern_flow_config;

enum {
    TERN_FEC_OFF = 0,      /* loss is repaired by retransmission (NACK) only */
    TERN_FEC_FIXED = 1,    /* every group gets fec_repair_pct repair */
    TERN_FEC_ADAPTIVE = 2, /* repair follows the measured loss and its bursts, and each
                              message's deadline: sent where a retransmission could not arrive
                              in time (by the deadline; for a message with frame dependencies,
                              a live frame, also by one-way delay + 100 ms, a live playout; and
                              for the tail of a burst of data, where the next retransmission
                              would wait for a probe timeout); none where retransmission can
                              repair in time */
};

void tern_flow_config_default(tern_flow_config *cfg);

/* Opens a sending flow. Errors: TERN_ERR_STATE (not established), TERN_ERR_LIMIT (the peer's
 * max_flows), TERN_ERR_NOMEM, TERN_ERR_INVALID_ARG. */
int tern_flow_open(tern_conn *c, const tern_flow_config *cfg, uint64_t *flow_id);
/* Queues one message (any size up to 64 MiB; fragmented and reassembled), copying it: data may
 * be reused as soon as the call returns. priority < 0 takes the flow's default. Errors:
 * TERN_ERR_NOT_FOUND, TERN_ERR_STATE (closed), TERN_ERR_AGAIN (the flow's send buffer or the
 * connection's conn_memory budget is full: wait for on_flow_writable), TERN_ERR_TOO_LARGE,
 * TERN_ERR_NOMEM.
 *
 * Events of a sending flow (tern_callbacks; each may be NULL):
 *   on_flow_acked(conn, flow_id, p): the peer acknowledged data of the flow, or messages of it
 *     were given up (PARTIAL, UNRELIABLE). p holds cumulative counts since the flow opened (see
 *     tern_flow_progress), so progress and completion need no polling: everything queued so far
 *     is done when p->queued is 0. Called at most once per flow per received packet, however
 *     many fragments the packet's ACKs cover.
 *   on_flow_writable(conn, flow_id): a tern_flow_send or tern_flow_send_ref on this flow was
 *     refused with TERN_ERR_AGAIN, and a message of that size would now be taken: the queue
 *     fell to half of send_buffer or below (the low-water mark) and the connection's budget has
 *     room. Fired once per refusal (per transition from full to writable), never per packet;
 *     a flow that was never refused gets none. Not after the connection stops being
 *     established.
 *   on_flow_release(conn, flow_id, token, delivered): the core no longer references the buffer
 *     of a message queued with tern_flow_send_ref(..., token): delivered is 1 when the peer
 *     acknowledged every byte of it, 0 when it was given up or the connection ended first
 *     (closed, reset, timed out, freed). Called exactly once per such message, including from
 *     tern_endpoint_del (the one callback it makes: there the application may only take its
 *     buffer back), and always before on_conn_free.
 * When: at the end of processing the received packet whose ACKs caused them (a message given up
 * by a timer or while building packets is reported after the next received packet, or when the
 * connection is freed). Order, for each flow: the on_flow_release calls, then on_flow_acked
 * (whose counts include the released messages), then on_flow_writable. Re-entrancy: the three
 * callbacks may call tern_flow_send, tern_flow_send_ref, tern_flow_open, tern_flow_close,
 * tern_conn_close and the other tern_conn_* / tern_flow_* calls on any connection of the
 * endpoint, but not tern_endpoint_recv, tern_endpoint_send, tern_endpoint_handle_expiry or
 * tern_endpoint_del (the driver: not tern_driver_process, run or del); what they queue goes out
 * when the caller next sends (the driver does before it sleeps). */
int tern_flow_send(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data, size_t len,
                   int priority);
/* Zero-copy: queues data[0..len) as one message without copying it. The caller keeps the buffer
 * alive and unchanged until on_flow_release(conn, flow_id, token, delivered) reports that the
 * core is done with it: packets (and retransmissions) read their fragments from it directly.
 * The message counts in the flow's queue (tern_flow_queued, send_buffer) like a copied one; the
 * connection's conn_memory budget counts only the core's small record of it, since the bytes
 * are the application's. Needs on_flow_release (TERN_ERR_INVALID_ARG without it); other errors
 * as tern_flow_send. On an error nothing is referenced and no release follows. */
int tern_flow_send_ref(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                       size_t len, int priority, void *token);

/* Frame-aware sending: options of one message for tern_flow_send_msg. Messages of a flow are
 * numbered from 0 in the order they are queued (every tern_flow_send* call takes the next
 * number), and a message may name what it depends on. When the sender gives a message up
 * (deadline, retransmission budget, tern_flow_flush) or the receiver finds it expired, every
 * message that depends on it, directly or through a chain, is dropped at the sender (not sent,
 * or no longer retransmitted) and skipped at the receiver (on_msg_skipped there), and the
 * sending application gets on_keyframe_request. Dependencies need an ordered flow. */
enum {
    TERN_MSG_KEYFRAME = 1,   /* starts a group of pictures: depends on nothing before it */
    TERN_MSG_DEPENDS = 2,    /* depends on message depends_on (an earlier message of the flow) */
    TERN_MSG_GOP = 4,        /* depends on every earlier message of its group of pictures
                                (since the last TERN_MSG_KEYFRAME) */
};
typedef struct tern_msg_opts {
    int priority;            /* 0..7, or < 0: the flow's default */
    uint32_t deadline_ms;    /* 0: the flow's deadline_ms. Both sides expire a flow's messages
                                in queue order: keep deadlines from decreasing along a flow */
    uint32_t flags;          /* TERN_MSG_* */
    uint64_t depends_on;     /* with TERN_MSG_DEPENDS: that message's ID */
} tern_msg_opts;
/* Queues one message as tern_flow_send does (copying it; opts NULL: the flow's defaults) and
 * stores its message ID in *msg_id (may be NULL). Errors as tern_flow_send, and
 * TERN_ERR_INVALID_ARG for a dependency on a later message or on an unordered flow. A message
 * that depends on one already given up is refused with TERN_ERR_STATE: send a keyframe. Each
 * side remembers the fate of the last 1024 message IDs of a flow: a dependency further back is
 * taken as delivered. From its first tern_flow_send_msg on, an ordered flow's messages carry
 * their ID and dependencies on the wire (docs/protocol.md 6.2, "Frame dependencies"). */
int tern_flow_send_msg(tern_conn *c, uint64_t flow_id, uint64_t now, const uint8_t *data,
                       size_t len, const tern_msg_opts *opts, uint64_t *msg_id);

/* Drops what a sending flow has queued, e.g. for a bitrate switch: TERN_FLUSH_UNSENT drops the
 * messages not yet begun on the wire (on any flow: the receiver never learns of them);
 * TERN_FLUSH_ALL also gives up every message in flight or waiting for retransmission (PARTIAL
 * and UNRELIABLE flows only: the receiver is told with FLOW_FORWARD and skips them). Dropped
 * messages count as given up (on_flow_acked, on_flow_release with delivered 0) and their
 * dependents are dropped with them. Returns the number of bytes dropped (>= 0) or
 * TERN_ERR_NOT_FOUND, TERN_ERR_INVALID_ARG (FLUSH_ALL on a RELIABLE flow). */
enum { TERN_FLUSH_UNSENT = 0, TERN_FLUSH_ALL = 1 };
int64_t tern_flow_flush(tern_conn *c, uint64_t flow_id, int mode);

/* What on_flow_acked reports about a sending flow: cumulative since it opened. */
struct tern_flow_progress {
    uint64_t acked_bytes;       /* message bytes the peer acknowledged (counted per fragment) */
    uint64_t acked_messages;    /* messages every byte of which the peer acknowledged */
    uint64_t given_up_messages; /* messages given up (PARTIAL/UNRELIABLE deadlines, budgets) */
    uint64_t queued;            /* bytes queued and not yet acknowledged or given up, as
                                   tern_flow_queued (0: everything sent so far is done) */
};
/* Closes a sending flow once everything queued is delivered (or given up). */
int tern_flow_close(tern_conn *c, uint64_t flow_id);
/* Bytes queued on a sending flow and not yet acknowledged (for application back-pressure). */
uint64_t tern_flow_queued(const tern_conn *c, uint64_t flow_id);
/* Receive side: while paused nothing is delivered; the peer is held back by flow control. */
int tern_flow_set_paused(tern_conn *c, uint64_t flow_id, int paused);

struct tern_network_info {
    uint64_t bandwidth_bps;   /* the congestion controller's estimate of the path's rate */
    uint64_t pacing_rate_bps;
    uint64_t srtt_ns, min_rtt_ns, rttvar_ns;
    uint64_t cwnd_bytes, bytes_in_flight;
    double loss_rate;         /* lost / sent packets over the recent past (0..1) */
    uint64_t queue_delay_ns;  /* what our own sending queues: smoothed RTT above the least of
                                 the last 10 s, plus what waits at the sender when the
                                 controller lets out less than is queued (protocol.md 6.3) */
    double loss_burst;        /* mean length of a run of lost packets (1: random loss) */
    uint64_t target_rate_bps; /* what an encoder should produce now (tern_conn_target_rate) */
};

/* Encoder feedback: the payload rate (bits per second) an application producing live media
 * should aim for now: the bandwidth estimate less the repair the flows' FEC needs at the
 * measured loss, reduced while our own queue builds (queue_delay) so the queue drains; also
 * pushed through on_target_rate when it moves by 10%. 0 before there is an estimate. */
uint64_t tern_conn_target_rate(const tern_conn *c);

/* The current estimate (also pushed through on_network when it changes). */
void tern_conn_network_info(const tern_conn *c, tern_network_info *info);

typedef struct tern_conn_stats {
    uint64_t rx_packets, tx_packets, rx_bytes, tx_bytes;
    uint64_t drop_auth, drop_replay;
    uint64_t srtt_ns, rttvar_ns, min_rtt_ns, latest_rtt_ns;
    uint64_t datagrams_sent, datagrams_received, datagrams_dropped;
    uint64_t handshake_ns;  /* from start to established */
    uint64_t packets_lost, packets_retransmitted_frags;
    uint64_t spurious_losses; /* packets declared lost whose ACK came after all (within a PTO
                                 of the loss; the newest 16 lost are remembered) */
    uint64_t pto_count;
    uint64_t messages_sent, messages_received, messages_abandoned;
    uint64_t messages_expired; /* arrived complete after their deadline: dropped, not delivered */
    uint64_t stream_bytes_sent, stream_bytes_received; /* flow payload bytes */
    uint8_t aead;           /* TERN_AEAD_* in use */
    uint8_t integrity_only;
    uint64_t key_updates;   /* packet-protection key updates (either side started them) */
    /* stream paths (TCP, TLS) */
    uint64_t stream_packets_sent, stream_packets_received;
    uint64_t stream_packets_lost; /* sent on a stream and declared lost because that stream
                                     closed or the connection moved off it, or because a later
                                     packet on it was acknowledged and it was not (stream_gaps;
                                     never by the loss thresholds: the stream delivers in order
                                     what it took) */
    uint64_t stream_gaps;    /* of those: the driver dropped them (its stream was down for a
                                reconnect backoff, or its write buffer full) */
    uint64_t udp_probes;     /* Initials and PATH_CHALLENGEs sent to the UDP remote of a
                                tern_endpoint_connect_opts connection while it has no working
                                UDP path (a stream carries it or nothing answered yet) */
    /* migration (docs/protocol.md, "Migration") */
    uint64_t migrations;    /* client: moves by tern_conn_migrate; server: moves to a new
                               address of the peer (its migration or a NAT rebinding), each
                               after the new address answered a PATH_CHALLENGE */
    uint64_t migrations_validated; /* client: moves whose new path answered our challenge */
    uint64_t silent_bytes;  /* bytes of ack-eliciting packets sent while a probe timeout went
                               unanswered (the cost of a silent path: two probes at the first
                               two timeouts, then one PING per timeout) */
    /* path MTU (see docs/protocol.md, "Path MTU"): the largest datagram the connection builds
     * now; how often a run of lost large packets or a probe timeout made the size suspect; how
     * often probes of the size itself were lost too (a black hole: back to max_udp_payload and a
     * fresh search) */
    uint64_t pmtu_size, pmtu_suspicions, pmtu_black_holes;
    /* forward error correction (docs/protocol.md, "Repair") */
    uint64_t fec_repair_sent;      /* repair fragments we sent */
    uint64_t fec_repair_received;  /* repair fragments that arrived */
    uint64_t fec_recovered;        /* fragments we rebuilt from repair (not retransmitted) */
    uint64_t fec_unrecoverable;    /* groups that lost more than their repair could rebuild */
    uint64_t fec_dropped;          /* repair fragments dropped: group unknown, over the repair
                                      memory budget, or for fragments already complete */
    uint64_t fec_repair_lost;      /* sender: repair fragments declared lost (a packet loss
                                      that needs no rebuilding: packets_lost less these and
                                      less fec_recovered is what the repair did not save) */
    uint64_t fec_unsaved;          /* sender: lost source fragments held for their group's
                                      repair that the receiver did not rebuild (its repair
                                      lost too, or too little of the group arrived) */
    /* frame-aware delivery */
    uint64_t msgs_dropped_dep;     /* sender: messages dropped because one they need was lost */
    uint64_t msgs_skipped_dep;     /* receiver: messages skipped for the same reason */
    uint64_t keyframe_requests_sent, keyframe_requests_received;
    uint64_t flushed_bytes;        /* tern_flow_flush */
    uint64_t target_rate_events;   /* on_target_rate calls */
} tern_conn_stats;

void tern_conn_get_stats(const tern_conn *c, tern_conn_stats *st);

#ifdef __cplusplus
}
#endif
#endif
