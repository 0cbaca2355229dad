/*
 * tern rendezvous: the directory of peers, introductions, groups and RPC routing that ternd
 * offers over tern connections (docs/rendezvous.md is the wire specification).
 *
 * A peer connects to the rendezvous server with its long-term key (its peer ID is the BLAKE2b
 * hash of that key), opens one reliable ordered flow and sends requests on it, one message per
 * flow message. The server opens one reliable ordered flow back for responses and events.
 * Messages are a version byte, a kind byte and a sequence of TLVs (type u8, length u16, value).
 *
 * Two halves, both sans-I/O:
 *   - the codec (tern_rdv_encode / tern_rdv_decode) and tokens (tern_rdv_token_make), used by
 *     both sides; a client builds a tern_rdv_msg, encodes it and sends it with tern_flow_send,
 *     and decodes what arrives in on_message;
 *   - the server (tern_rdv_server_*): the embedding program forwards its tern_endpoint callbacks
 *     (on_accept, on_message, on_conn_free) and runs tern_rdv_server_handle_expiry at
 *     tern_rdv_server_next_deadline. The server answers with tern_flow_send on the connections it
 *     was given and owns those connections' user data (tern_conn_set_user_data);
 *   - the client (tern_rdv_client_*): a peer's side, on its connection to the server; it turns
 *     introductions into peer-to-peer connections (tern_endpoint_connect_peer / _expect_peer).
 */
#ifndef TERN_RENDEZVOUS_H
#define TERN_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

#include "tern/relay.h"
#include "tern/tern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_RDV_VERSION 1
#define TERN_RDV_MAX_CANDS 8        /* candidate addresses in one message */
#define TERN_RDV_MAX_NAME 255       /* group, service and method names: 1..255 bytes */
#define TERN_RDV_MAX_PAYLOAD 65535  /* group message, call and reply payloads */
#define TERN_RDV_MAX_MEMBERS 64     /* peer IDs in one JOINED bootstrap list */
#define TERN_RDV_NONCE_LEN 16
#define TERN_RDV_SECRET_LEN 32      /* HMAC-SHA256 key for tokens */
#define TERN_RDV_MAC_LEN 32
#define TERN_RDV_TOKEN_LEN 40       /* expiry (u64 big-endian) || HMAC-SHA256 */
/* Largest encoded message (every field at its maximum); a buffer this big always suffices. */
#define TERN_RDV_MAX_MSG 70000

/* Message kinds (the second byte of every message). */
typedef enum tern_rdv_kind {
    TERN_RDV_REGISTER = 1,    /* c->s: local candidates, token? */
    TERN_RDV_REGISTERED = 2,  /* s->c: the address the server sees, relay? */
    TERN_RDV_INTRODUCE = 3,   /* c->s: target peer ID */
    TERN_RDV_PEER_INFO = 4,   /* s->requester: target's ID, key, candidates, nonce */
    TERN_RDV_INTRODUCED = 5,  /* s->target: requester's ID, key, candidates, same nonce */
    TERN_RDV_JOIN = 6,        /* c->s: group, token? */
    TERN_RDV_JOINED = 7,      /* s->c: group, bootstrap members, member count */
    TERN_RDV_LEAVE = 8,       /* c->s: group */
    TERN_RDV_PRESENCE = 9,    /* s->members: group, peer ID, event (join/leave) */
    TERN_RDV_GROUP_MSG = 10,  /* c->s: group, payload; s->members: group, sender ID, payload */
    TERN_RDV_OFFER = 11,      /* c->s: service, token? */
    TERN_RDV_OFFERED = 12,    /* s->c: service */
    TERN_RDV_CALL = 13,       /* c->s: service, method, call id, timeout, payload;
                                 s->provider: service, method, server call id, caller, payload */
    TERN_RDV_REPLY = 14,      /* provider->s: call id, status, payload; s->caller: the same with
                                 the caller's call id */
    TERN_RDV_ERROR = 15,      /* s->c: error code, request kind, subject */
    TERN_RDV_KIND_MAX_ = 15,
} tern_rdv_kind;

/* Error codes carried by ERROR messages (not TERN_ERR_* values: these travel on the wire). */
typedef enum tern_rdv_error {
    TERN_RDV_E_UNKNOWN_PEER = 1,    /* INTRODUCE: no registered peer has that ID */
    TERN_RDV_E_NOT_REGISTERED = 2,  /* any request before REGISTERED */
    TERN_RDV_E_NO_SERVICE = 3,      /* CALL: nobody offers the service */
    TERN_RDV_E_TIMEOUT = 4,         /* CALL: the provider did not reply in time */
    TERN_RDV_E_PROVIDER_GONE = 5,   /* CALL: the provider disconnected before replying */
    TERN_RDV_E_TOKEN_REQUIRED = 6,  /* the server needs a token for this request */
    TERN_RDV_E_TOKEN_FORGED = 7,    /* the token's MAC does not verify */
    TERN_RDV_E_TOKEN_EXPIRED = 8,   /* the token's expiry is in the past */
    TERN_RDV_E_RATE_LIMITED = 9,    /* GROUP_MSG dropped by a per-group or per-peer limit */
    TERN_RDV_E_NOT_MEMBER = 10,     /* GROUP_MSG / LEAVE for a group the peer is not in */
    TERN_RDV_E_SERVICE_TAKEN = 11,  /* OFFER: another peer offers that service */
    TERN_RDV_E_LIMIT = 12,          /* a server limit (groups, calls, memory) was reached */
    TERN_RDV_E_MALFORMED = 13,      /* the request could not be decoded; it was ignored */
    TERN_RDV_E_INVALID = 14,        /* well-formed but meaningless (introduce to oneself, ...) */
} tern_rdv_error;

/* Token kinds (what a token authorises). */
enum { TERN_RDV_TOKEN_REGISTER = 1, TERN_RDV_TOKEN_JOIN = 2, TERN_RDV_TOKEN_OFFER = 3 };

/* Candidate kinds. */
enum {
    TERN_RDV_CAND_LOCAL = 1,     /* an address the peer reports for itself */
    TERN_RDV_CAND_PUBLIC = 2,    /* the address the server sees the peer's packets come from */
    TERN_RDV_CAND_RELAY = 3,     /* the server's relay */
};

/* PRESENCE events. */
enum { TERN_RDV_PRESENCE_JOIN = 1, TERN_RDV_PRESENCE_LEAVE = 2 };

typedef struct tern_rdv_cand {
    uint8_t kind; /* TERN_RDV_CAND_* */
    tern_addr addr;
} tern_rdv_cand;

/* One decoded (or to-be-encoded) message. Variable-length fields point into the decoded buffer
 * (or the caller's memory when encoding); a field is present when its has_ flag or length is
 * set. Which fields each kind requires is in docs/rendezvous.md. */
typedef struct tern_rdv_msg {
    uint8_t kind; /* tern_rdv_kind */
    uint8_t has_peer_id, has_pubkey, has_nonce, has_token, has_call_id, has_timeout,
        has_status, has_error, has_event, has_count;
    uint8_t peer_id[TERN_PEER_ID_LEN];
    uint8_t pubkey[TERN_KEY_LEN];
    uint8_t nonce[TERN_RDV_NONCE_LEN];
    uint8_t token[TERN_RDV_TOKEN_LEN];
    size_t n_cands;
    tern_rdv_cand cands[TERN_RDV_MAX_CANDS];
    const uint8_t *group;   size_t group_len;
    const uint8_t *service; size_t service_len;
    const uint8_t *method;  size_t method_len;
    const uint8_t *payload; size_t payload_len; int has_payload;
    const uint8_t *members; size_t n_members; /* n_members * TERN_PEER_ID_LEN bytes */
    uint64_t call_id;
    uint32_t timeout_ms;
    uint32_t status;        /* REPLY: 0 = success, anything else is the application's error */
    uint16_t error;         /* ERROR: tern_rdv_error */
    uint8_t req_kind;       /* ERROR: the kind of the request it answers */
    uint8_t event;          /* PRESENCE: TERN_RDV_PRESENCE_* */
    uint32_t count;         /* JOINED: members in the group; ERROR(RATE_LIMITED): drops so far */
    uint8_t has_channel;    /* PEER_INFO / INTRODUCED: the recipient's own relay channel */
    uint8_t channel[TERN_RELAY_CHANNEL_LEN];
} tern_rdv_msg;

/* Zeroes m and sets its kind. */
void tern_rdv_msg_init(tern_rdv_msg *m, uint8_t kind);
/* Zeroes m as an ERROR with code (tern_rdv_error) answering a request of kind req_kind (0: none);
 * the caller adds what names the request (group, call ID, ...). */
void tern_rdv_msg_error(tern_rdv_msg *m, uint8_t req_kind, uint16_t code);

/* Encodes m into buf. Returns the length, or TERN_ERR_BUFFER (buf too small),
 * TERN_ERR_INVALID_ARG (unknown kind, a field over its limit, a required field missing). */
int tern_rdv_encode(const tern_rdv_msg *m, uint8_t *buf, size_t cap);

/* Decodes one message (bounded cursor; nothing outside data[0..len) is read). m's pointers point
 * into data. Errors: TERN_ERR_TRUNCATED (a TLV runs past the end), TERN_ERR_VERSION,
 * TERN_ERR_MALFORMED (unknown kind, bad field length or value, a repeated field, a required
 * field missing). Unknown TLV types at or above 0x80 are skipped; below it they are malformed. */
int tern_rdv_decode(const uint8_t *data, size_t len, tern_rdv_msg *m);

/* Encodes m and queues it on flow (tern_flow_send's errors, plus tern_rdv_encode's). Uses a
 * buffer on the stack for small messages and the heap (malloc) for large ones. */
int tern_rdv_send(tern_conn *c, uint64_t flow, uint64_t now, const tern_rdv_msg *m);

/* Makes a token: expiry (unix seconds, big-endian) || HMAC-SHA256(secret, "tern-rdv-token-1" ||
 * kind || subject length (u8) || subject || expiry). subject is the peer ID (REGISTER), the
 * group name (JOIN) or the service name (OFFER), 1..255 bytes. TERN_ERR_INVALID_ARG. */
int tern_rdv_token_make(const uint8_t secret[TERN_RDV_SECRET_LEN], uint8_t kind,
                        const uint8_t *subject, size_t subject_len, uint64_t expiry_unix,
                        uint8_t token[TERN_RDV_TOKEN_LEN]);

/* Checks a token. Returns 0, or TERN_RDV_E_TOKEN_FORGED (MAC mismatch: checked first, in
 * constant time), or TERN_RDV_E_TOKEN_EXPIRED (expiry < now_unix). */
int tern_rdv_token_check(const uint8_t secret[TERN_RDV_SECRET_LEN], uint8_t kind,
                         const uint8_t *subject, size_t subject_len, uint64_t now_unix,
                         const uint8_t token[TERN_RDV_TOKEN_LEN]);

/* Names an error code ("unknown" for others). */
const char *tern_rdv_error_name(int code);

/* Whether a LOCAL candidate may be used: its IP is in a range that can be a peer's own local
 * address (RFC 1918 10/8, 172.16/12, 192.168/16; 100.64/10 shared space; 169.254/16 and
 * fe80::/10 link-local; fc00::/7 unique local), with a port, and never multicast, broadcast or
 * unspecified. Loopback (127/8, ::1) only when `observed` (the peer's address as the server sees
 * it) is loopback itself: peers and server on one host. Anything else (a public address, which
 * could be a victim's) is dropped: the server drops it on REGISTER, the client on PEER_INFO and
 * INTRODUCED. observed may be NULL (then loopback is refused). */
int tern_rdv_local_cand_ok(const tern_addr *a, const tern_addr *observed);

/* ---------------------------------------------------------------- server */

typedef struct tern_rdv_server tern_rdv_server;

typedef struct tern_rdv_config {
    const tern_mem *mem;        /* NULL: tern_mem_default() */
    tern_rand_fn rand;          /* NULL: libsodium randombytes_buf (nonces, hash keys) */
    void *rand_user;
    uint32_t max_peers;         /* connections tracked at once (1,000,000) */
    uint32_t max_groups_per_peer; /* (64) */
    uint32_t bootstrap_recent;  /* most recent joiners in a JOINED list (8) */
    uint32_t bootstrap_random;  /* random members in a JOINED list (24) */
    uint32_t group_rate, group_burst; /* GROUP_MSG per second per group, bucket depth (1000, 2000) */
    uint32_t peer_rate, peer_burst;   /* GROUP_MSG per second per peer (100, 200) */
    uint32_t max_calls;         /* calls in flight, server-wide (1,000,000: ~130 MB) */
    uint32_t max_calls_per_peer; /* calls in flight per caller (64) */
    uint32_t max_calls_per_provider; /* calls in flight to one provider (4096) */
    uint32_t default_timeout_ms; /* CALL without (or with 0) timeout (10,000) */
    uint32_t max_timeout_ms;    /* longer timeouts are cut to this (60,000) */
    int has_relay;
    tern_addr relay;            /* offered as a RELAY candidate in introductions; an unspecified
                                   IP (0.0.0.0 or ::) means "the address you reach this server
                                   at", with this port */
    tern_relay *relay_sessions; /* not owned; with has_relay, each introduction opens a session
                                   on it and hands each side its CHANNEL (NULL: RELAY only) */
    int has_secret;             /* tokens: the server's secret */
    uint8_t secret[TERN_RDV_SECRET_LEN];
    uint8_t require_register_token, require_join_token, require_offer_token;
    int64_t unix_offset_s;      /* unix time = unix_offset_s + now / 1e9 (tokens' expiry) */
    /* Limits on what one peer (an authenticated but anonymous connection) can make the server
     * hold or send (docs/rendezvous.md, section 7; every refusal is counted in tern_rdv_stats).
     * 0 means "no limit" for each, except where said. */
    uint32_t max_services;       /* services server-wide (200,000) */
    uint32_t max_services_per_peer; /* services one peer offers (16) */
    uint32_t max_groups;         /* groups server-wide (100,000) */
    uint32_t max_group_members;  /* members of one group (5,000) */
    uint32_t join_rate, join_burst; /* JOIN + LEAVE per second per peer, bucket depth (10, 20):
                                       over it ERROR(RATE_LIMITED), nothing changes */
    uint32_t presence_rate, presence_burst; /* PRESENCE events per second per group (20, 40);
                                               events over it are not sent (counted) */
    uint32_t presence_max_members; /* groups with more members send no PRESENCE at all (256) */
    uint32_t intro_rate, intro_burst; /* INTRODUCE per second per requester (10, 64: as many as
                                         a client may have pending) */
    uint32_t intro_target_rate, intro_target_burst; /* introductions per second to one target
                                       from one requester IP (2, 10); 4 requester IPs tracked
                                       per target, an IP's slot reused once its bucket is half
                                       full again (docs/rendezvous.md section 4) */
    uint32_t max_local_cands;    /* LOCAL candidates kept per peer (4, at most 6) */
    uint32_t max_relay_per_peer; /* relay sessions one peer's introductions hold open (16) */
    uint64_t max_queue_bytes;    /* bytes queued to one peer (tern_flow_queued on the server's
                                    flow to it): events (GROUP_MSG, PRESENCE, INTRODUCED, CALL)
                                    over it are not sent to it (counted; 20 s of that closes
                                    the peer); a response over 1.25 times it closes the peer,
                                    which is not reading (256 KiB) */
    uint64_t max_peer_state;     /* accounted bytes of rendezvous state one peer holds: its
                                    candidates, memberships (a group's record counted in full),
                                    services, calls and relay bookkeeping (64 KiB) */
    uint64_t max_mem;            /* the server's own memory (stats.mem_current): past it new
                                    state is refused and new connections too (512 MiB) */
} tern_rdv_config;

/* Fills cfg with the defaults above (no relay, no secret, no tokens required). */
void tern_rdv_config_default(tern_rdv_config *cfg);

/* Creates a server. Errors: TERN_ERR_NOMEM, TERN_ERR_INVALID_ARG (a token is required but no
 * secret is set). */
int tern_rdv_server_new(const tern_rdv_config *cfg, tern_rdv_server **out);
/* Frees the server and its state; the connections stay the endpoint's (their user data is left
 * dangling: delete the server after the endpoint, or after every connection was freed). */
void tern_rdv_server_del(tern_rdv_server *s);

/* Call from on_accept: tracks the connection (its peer ID and key) until on_conn_free. Returns 0,
 * or TERN_ERR_LIMIT (max_peers), TERN_ERR_NOMEM, TERN_ERR_STATE (no peer key): refuse then. */
int tern_rdv_server_on_accept(tern_rdv_server *s, tern_conn *c, uint64_t now);
/* Call from on_message. A message that does not decode is counted (stats.bad_messages) and
 * answered with ERROR(MALFORMED); nothing else changes. */
void tern_rdv_server_on_message(tern_rdv_server *s, tern_conn *c, uint64_t flow_id,
                                const uint8_t *data, size_t len, uint64_t now);
/* Call from on_closed or on_conn_free (twice is harmless): the peer leaves the directory, its
 * groups (presence LEAVE to the other members) and its services (calls in flight to it fail with
 * ERROR(PROVIDER_GONE)). */
void tern_rdv_server_on_gone(tern_rdv_server *s, tern_conn *c, uint64_t now);

/* When handle_expiry must next run (call timeouts); TERN_TIME_NEVER when never. */
uint64_t tern_rdv_server_next_deadline(const tern_rdv_server *s);
/* Answers ERROR(TIMEOUT) for every call whose deadline passed. */
void tern_rdv_server_handle_expiry(tern_rdv_server *s, uint64_t now);

typedef struct tern_rdv_stats {
    uint64_t peers;              /* connections tracked now */
    uint64_t registered;         /* peers in the directory now */
    uint64_t groups, services, calls_pending;
    uint64_t registrations, introductions, intro_unknown;
    uint64_t joins, leaves, group_msgs, fanout_msgs;
    uint64_t rate_dropped_group, rate_dropped_peer;
    uint64_t calls, replies, call_timeouts, call_gone, call_no_service, late_replies;
    uint64_t token_rejected;
    uint64_t relay_opened, relay_refused; /* introductions given a relay session, or not
                                             (a relay limit: introduced without RELAY) */
    uint64_t bad_messages;       /* requests that did not decode */
    uint64_t tx_messages, tx_failed; /* tern_flow_send results */
    uint64_t mem_current;        /* bytes allocated through the hook now */
    /* limits (tern_rdv_config): requests refused or events not sent, by cause */
    uint64_t limit_services;     /* OFFER over max_services or max_services_per_peer */
    uint64_t limit_groups;       /* JOIN over max_groups, max_groups_per_peer or
                                    max_group_members */
    uint64_t rate_dropped_join;  /* JOIN / LEAVE over join_rate */
    uint64_t presence_dropped;   /* PRESENCE not sent: presence_rate or presence_max_members
                                    (one per event, not per member) */
    uint64_t intro_limited_peer, intro_limited_target; /* INTRODUCE over intro_rate /
                                                          intro_target_rate */
    uint64_t local_cands_dropped; /* LOCAL candidates refused on REGISTER (range or count) */
    uint64_t relay_refused_peer; /* introduced without relay: max_relay_per_peer */
    uint64_t relay_closed;       /* sessions closed because a peer of theirs left */
    uint64_t limit_calls;        /* CALL over max_calls, max_calls_per_peer or _per_provider */
    uint64_t limit_peer_state;   /* requests refused by max_peer_state */
    uint64_t limit_mem;          /* requests or connections refused by max_mem */
    uint64_t queue_dropped;      /* events not sent to a peer over max_queue_bytes */
    uint64_t slow_closed;        /* peers closed: a response would pass max_queue_bytes */
    uint64_t queue_max;          /* the most bytes seen queued to one peer (high-water mark) */
    uint64_t peer_state_max;     /* the most accounted state one peer held (high-water mark) */
} tern_rdv_stats;

void tern_rdv_server_get_stats(const tern_rdv_server *s, tern_rdv_stats *st);

/* ---------------------------------------------------------------- client */

/* The peer side, sans-I/O like the server. The embedding program opens a tern connection to the
 * rendezvous server from the SAME endpoint it uses for peers (that endpoint must be is_server
 * with the peer's long-term key: the target of an introduction accepts the other peer's
 * handshake, and hole punching only works from the socket whose public address the server saw),
 * creates a client on that connection, and:
 *   - forwards on_message for the server connection to tern_rdv_client_on_message, and
 *     on_closed / on_conn_free for it to tern_rdv_client_on_gone;
 *   - calls tern_rdv_client_accept from on_accept, to learn whether an incoming connection is a
 *     peer the server introduced (or any peer, with accept_any), and tern_rdv_client_hold from
 *     on_accept_hold, so that a handshake that beats its INTRODUCED waits for it;
 *   - runs tern_rdv_client_handle_expiry at tern_rdv_client_next_deadline (call time-outs of
 *     last resort, forgotten expectations and held handshakes).
 * Requests need the server connection established (TERN_ERR_STATE before). Introductions: on
 * PEER_INFO the client calls tern_endpoint_connect_peer with the peer's candidates (LOCAL
 * first, then PUBLIC; LOCAL ones only in local ranges, tern_rdv_local_cand_ok, at most
 * TERN_RDV_CLIENT_MAX_LOCAL) and reports the new connection (on_peer_conn); ERROR(UNKNOWN_PEER)
 * and the other errors answering INTRODUCE report through on_intro_failed. On INTRODUCED it calls
 * tern_endpoint_expect_peer and remembers the peer's key until the peer's connection is
 * accepted or probe_duration_ns (plus a margin) passes; a full table of
 * TERN_RDV_CLIENT_MAX_PENDING gives up its oldest expectation for the new one, and the key is
 * remembered even when the endpoint's own table is full (no punching then). Events come through the callbacks with
 * user_data; every callback may be NULL; pointers are valid during the call only. The client
 * never closes or frees a connection. */

typedef struct tern_rdv_client tern_rdv_client;

typedef struct tern_rdv_client_callbacks {
    /* REGISTERED: the address the server sees this peer at. */
    void (*on_registered)(tern_rdv_client *rc, const tern_addr *public_addr, void *user_data);
    /* Initiator: PEER_INFO arrived and tern_endpoint_connect_peer opened conn (reports through
     * the endpoint's on_path / on_established / on_closed), or failed: then conn is NULL and
     * err is its error. */
    void (*on_peer_conn)(tern_rdv_client *rc, const uint8_t peer_id[TERN_PEER_ID_LEN],
                         tern_conn *conn, int err, void *user_data);
    /* Initiator: the server answered INTRODUCE with an error (TERN_RDV_E_UNKNOWN_PEER, ...). */
    void (*on_intro_failed)(tern_rdv_client *rc, const uint8_t peer_id[TERN_PEER_ID_LEN],
                            int rdv_error, void *user_data);
    /* Target: INTRODUCED arrived; err is tern_endpoint_expect_peer's result (0: expecting;
     * TERN_ERR_LIMIT: the endpoint punches for nobody more, but the peer is accepted). */
    void (*on_introduced)(tern_rdv_client *rc, const uint8_t peer_id[TERN_PEER_ID_LEN],
                          int err, void *user_data);
    /* JOINED: members now, and the bootstrap list (n_members peer IDs, concatenated). */
    void (*on_joined)(tern_rdv_client *rc, const uint8_t *group, size_t group_len,
                      uint32_t count, const uint8_t *members, size_t n_members, void *user_data);
    /* PRESENCE: event is TERN_RDV_PRESENCE_JOIN or _LEAVE. */
    void (*on_presence)(tern_rdv_client *rc, const uint8_t *group, size_t group_len,
                        const uint8_t peer_id[TERN_PEER_ID_LEN], int event, void *user_data);
    void (*on_group_msg)(tern_rdv_client *rc, const uint8_t *group, size_t group_len,
                         const uint8_t sender[TERN_PEER_ID_LEN], const uint8_t *payload,
                         size_t len, void *user_data);
    void (*on_offered)(tern_rdv_client *rc, const uint8_t *service, size_t service_len,
                       void *user_data);
    /* Provider: a call to a service this peer offers; answer with tern_rdv_client_reply(call_id)
     * (now or later, within timeout_ms). */
    void (*on_call)(tern_rdv_client *rc, const uint8_t *service, size_t service_len,
                    const uint8_t *method, size_t method_len, uint64_t call_id,
                    const uint8_t caller[TERN_PEER_ID_LEN], uint32_t timeout_ms,
                    const uint8_t *payload, size_t len, void *user_data);
    /* Caller: the reply to tern_rdv_client_call's call_id (status 0: success). */
    void (*on_reply)(tern_rdv_client *rc, uint64_t call_id, uint32_t status,
                     const uint8_t *payload, size_t len, void *user_data);
    /* Any other ERROR from the server, and a call's failure: err is the ERROR message (code in
     * err->error, the request kind in err->req_kind, the subject in err's fields: CALL_ID for a
     * call, which also gets TERN_RDV_E_TIMEOUT when the server's answer never came). */
    void (*on_error)(tern_rdv_client *rc, const tern_rdv_msg *err, void *user_data);
} tern_rdv_client_callbacks;

typedef struct tern_rdv_client_config {
    const tern_mem *mem;       /* NULL: tern_mem_default() */
    tern_addr local;           /* the address the endpoint's socket is bound to (as given to
                                  tern_endpoint_connect for the server connection) */
    int accept_any;            /* tern_rdv_client_accept accepts every peer, introduced or not */
    /* tern_peer_target timings (0: tern_peer_target_default's) */
    uint64_t relay_after_ns, probe_interval_ns, probe_duration_ns;
    uint64_t call_grace_ns;    /* a call fails locally this long after its timeout when the
                                  server never answered (2 s) */
    tern_rdv_client_callbacks callbacks;
    void *user_data;
} tern_rdv_client_config;

#define TERN_RDV_CLIENT_MAX_PENDING 64 /* introductions asked and expectations held at once;
                                          a new expectation when the table is full replaces
                                          the oldest, so a flood cannot lock it */
#define TERN_RDV_CLIENT_MAX_HELD 32    /* handshakes held waiting for INTRODUCED: a target is
                                          told of at most 8 introductions a second (the
                                          server's intro_target_rate, 4 IPs x 2/s), so 16 in a
                                          2 s hold, twice that for margin */
#define TERN_RDV_CLIENT_HOLD_NS (2 * TERN_NS_PER_S) /* how long one is held */
#define TERN_RDV_CLIENT_MAX_LOCAL 4    /* LOCAL candidates of a peer the client probes */
#define TERN_RDV_CLIENT_MAX_CALLS 256  /* calls in flight (a server may allow fewer: ternd's
                                          max_calls_per_peer is 64, over it ERROR(LIMIT)) */

void tern_rdv_client_config_default(tern_rdv_client_config *cfg);

/* Creates a client on server_conn (established or still in its handshake). Errors:
 * TERN_ERR_INVALID_ARG, TERN_ERR_NOMEM. */
int tern_rdv_client_new(const tern_rdv_client_config *cfg, tern_conn *server_conn,
                        tern_rdv_client **out);
void tern_rdv_client_del(tern_rdv_client *rc);

/* The server connection (NULL after on_gone). */
tern_conn *tern_rdv_client_conn(const tern_rdv_client *rc);
/* Bytes of requests queued on the server connection and not yet acknowledged (0 when none):
 * wait for 0 before closing it, so that a last GROUP_MSG or LEAVE is not lost. */
uint64_t tern_rdv_client_queued(const tern_rdv_client *rc);
/* 1 once REGISTERED arrived; the public address then in *out when out is not NULL. */
int tern_rdv_client_registered(const tern_rdv_client *rc, tern_addr *out);

/* Requests. Each returns TERN_OK once the message is queued, or TERN_ERR_STATE (no
 * established server connection), TERN_ERR_INVALID_ARG (a name or payload over its limit,
 * more than TERN_RDV_MAX_CANDS candidates), TERN_ERR_LIMIT (too many introductions or calls
 * pending), and tern_flow_open / tern_flow_send's errors. token may be NULL. */
int tern_rdv_client_register(tern_rdv_client *rc, uint64_t now, const tern_addr *cands,
                             size_t n_cands, const uint8_t *token);
int tern_rdv_client_introduce(tern_rdv_client *rc, uint64_t now,
                              const uint8_t peer_id[TERN_PEER_ID_LEN]);
int tern_rdv_client_join(tern_rdv_client *rc, uint64_t now, const uint8_t *group,
                         size_t group_len, const uint8_t *token);
int tern_rdv_client_leave(tern_rdv_client *rc, uint64_t now, const uint8_t *group,
                          size_t group_len);
int tern_rdv_client_group_send(tern_rdv_client *rc, uint64_t now, const uint8_t *group,
                               size_t group_len, const uint8_t *payload, size_t len);
int tern_rdv_client_offer(tern_rdv_client *rc, uint64_t now, const uint8_t *service,
                          size_t service_len, const uint8_t *token);
/* timeout_ms 0: the server's default (10 s). *call_id identifies the call in on_reply/on_error. */
int tern_rdv_client_call(tern_rdv_client *rc, uint64_t now, const uint8_t *service,
                         size_t service_len, const uint8_t *method, size_t method_len,
                         const uint8_t *payload, size_t len, uint32_t timeout_ms,
                         uint64_t *call_id);
/* Provider: answers on_call's call_id. */
int tern_rdv_client_reply(tern_rdv_client *rc, uint64_t now, uint64_t call_id, uint32_t status,
                          const uint8_t *payload, size_t len);

/* Call from on_accept: 0 when conn's peer key is one the server introduced (the expectation is
 * then used up) or accept_any is set; TERN_ERR_REFUSED otherwise (return it from on_accept). */
int tern_rdv_client_accept(tern_rdv_client *rc, tern_conn *conn, uint64_t now);
/* Call from on_accept_hold (tern_callbacks): 1 (hold) while conn's peer is not expected yet
 * and has been held less than TERN_RDV_CLIENT_HOLD_NS, else 0 (decide in on_accept). The
 * server's INTRODUCED to the target and the initiator's handshake travel different paths, so
 * the handshake may come first; holding it until INTRODUCED arrives (then accepted) or the hold
 * runs out (then refused) closes that race. Only peers whose handshake authenticated them get
 * here, and the client remembers at most TERN_RDV_CLIENT_MAX_HELD of them (key and first time
 * seen); a new one past that replaces the oldest (stats.hold_evicted), whose next packet starts
 * a new hold (the endpoint's handshake timeout and half-open limits still bound it). */
int tern_rdv_client_hold(tern_rdv_client *rc, tern_conn *conn, uint64_t now);

/* Call from on_message: returns 1 when conn is the server connection (the message was handled:
 * a message that does not decode is counted and dropped), 0 when conn is another connection. */
int tern_rdv_client_on_message(tern_rdv_client *rc, tern_conn *conn, uint64_t flow_id,
                               const uint8_t *data, size_t len, uint64_t now);
/* Call from on_closed or on_conn_free (twice is harmless): when conn is the server connection,
 * the client forgets it and every call in flight fails (on_error, TERN_RDV_E_PROVIDER_GONE). */
void tern_rdv_client_on_gone(tern_rdv_client *rc, tern_conn *conn, uint64_t now);

uint64_t tern_rdv_client_next_deadline(const tern_rdv_client *rc);
void tern_rdv_client_handle_expiry(tern_rdv_client *rc, uint64_t now);

typedef struct tern_rdv_client_stats {
    uint64_t rx_messages, bad_messages, unexpected; /* unexpected: decodes, nothing asked it */
    uint64_t introductions, peer_conns, intro_failed, introduced, expect_failed;
    uint64_t accepted, refused, calls, replies, call_errors, calls_timed_out_locally;
    uint64_t group_msgs, presence;
    uint64_t expect_evicted;    /* expectations replaced by newer ones in a full table */
    uint64_t held;              /* handshakes first held waiting for INTRODUCED (hold) */
    uint64_t hold_evicted;      /* held handshakes forgotten for newer ones in a full table */
    uint64_t local_cands_dropped; /* LOCAL candidates refused (range or count, as the server) */
} tern_rdv_client_stats;

void tern_rdv_client_get_stats(const tern_rdv_client *rc, tern_rdv_client_stats *st);

#ifdef __cplusplus
}
#endif
#endif
