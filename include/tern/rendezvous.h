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
 *     was given and owns those connections' user data (tern_conn_set_user_data).
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
    uint32_t max_calls;         /* calls in flight, server-wide (100,000) */
    uint32_t max_calls_per_peer; /* calls in flight per caller (256) */
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
} tern_rdv_stats;

void tern_rdv_server_get_stats(const tern_rdv_server *s, tern_rdv_stats *st);

#ifdef __cplusplus
}
#endif
#endif
