/*
 * tern relay: the server half of relayed peer-to-peer connections (docs/rendezvous.md, "Relay").
 *
 * When two peers cannot reach each other directly, each sends its tern packets to the server's
 * relay wrapped in a 9-byte header: TERN_RELAY_TYPE, then its own channel (8 random bytes the
 * rendezvous server handed it in the introduction), then one whole tern packet ("inner"). The
 * relay checks that the datagram comes from exactly the address registered for that channel,
 * rewrites the channel to the other side's, and sends the datagram, unchanged otherwise, to the
 * other side's registered address. It never looks inside inner beyond its first byte, never
 * answers, and never sends more bytes than it received (the output is the input, rewritten in
 * place). The peers' packets are AEAD-protected end to end: the relay can drop or delay them, not
 * read or forge them.
 *
 * Sans-I/O like the core (the relay is part of the rendezvous layer, docs/architecture.md): time
 * comes in as `now` (ns, monotonic), memory through a tern_mem, channels from a tern_rand_fn. The
 * embedding program (ternd's tern service) opens a session per introduction
 * (tern_rdv_config.relay does this), passes every datagram whose first byte is TERN_RELAY_TYPE
 * to tern_relay_forward and sends the result where it says, and runs tern_relay_handle_expiry
 * at tern_relay_next_deadline to free idle sessions.
 */
#ifndef TERN_RELAY_H
#define TERN_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "tern/tern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* TERN_RELAY_TYPE, TERN_RELAY_HDR_LEN and the header's encoder and decoder: tern/base.h */
#define TERN_RELAY_INNER_FIXED 0x40 /* bit every inner tern packet has set in its first byte */
#define TERN_RELAY_MAX_INNER (TERN_MAX_DATAGRAM - TERN_RELAY_HDR_LEN) /* 1491 */

typedef struct tern_relay tern_relay;

typedef struct tern_relay_config {
    const tern_mem *mem;          /* NULL: tern_mem_default() */
    tern_rand_fn rand;            /* NULL: libsodium randombytes_buf (channels, hash keys) */
    void *rand_user;
    uint32_t max_sessions;        /* sessions at once (100,000) */
    uint32_t max_per_addr;        /* sessions one address (IP and port: one peer's socket, not a
                                     whole NAT) may be part of (256); see tern_relay_open */
    uint64_t idle_timeout_ns;     /* a session nothing was forwarded on this long is freed (60 s) */
    uint64_t rate_bytes_per_s;    /* per-session token bucket, both directions together
                                     (50,000,000; 0: no limit) */
    uint64_t burst_bytes;         /* the bucket's depth (4,000,000) */
} tern_relay_config;

/* Fills cfg with the defaults above. */
void tern_relay_config_default(tern_relay_config *cfg);

/* Creates a relay. Errors: TERN_ERR_INVALID_ARG (NULL, max_sessions or idle_timeout_ns 0),
 * TERN_ERR_NOMEM, TERN_ERR_CRYPTO (libsodium failed to initialise). */
int tern_relay_new(const tern_relay_config *cfg, tern_relay **out);
/* Frees the relay and every session. NULL is a no-op. */
void tern_relay_del(tern_relay *r);

/* Opens a session between the peers at addr_a and addr_b (their public addresses, as the
 * rendezvous server sees them) and writes each side's channel: a datagram from addr_a carrying
 * ch_a goes to addr_b carrying ch_b, and one from addr_b carrying ch_b goes to addr_a carrying
 * ch_a. When the two addresses have a live session already (in either order), that session's
 * channels are returned instead and it is kept alive (counted in stats.reused), so repeating an
 * introduction costs nothing. Both channels are random and distinct from every live
 * channel. The session lives until it has been idle for idle_timeout_ns. Errors:
 * TERN_ERR_INVALID_ARG (NULL, an address without a family, or addr_a equal to addr_b),
 * TERN_ERR_LIMIT (max_sessions, or max_per_addr for either address; counted in
 * stats.open_refused), TERN_ERR_NOMEM. */
int tern_relay_open(tern_relay *r, uint64_t now, const tern_addr *addr_a, const tern_addr *addr_b,
                    uint8_t ch_a_out[TERN_RELAY_CHANNEL_LEN],
                    uint8_t ch_b_out[TERN_RELAY_CHANNEL_LEN]);

/* Forwards one datagram that arrived from `from`: on success the channel in data[1..8] has been
 * rewritten in place to the other side's, *to_out is where to send data[0..len), and the return
 * value is len (never more than was received). Otherwise the datagram is dropped, counted by
 * reason, and the return value says why: TERN_ERR_TRUNCATED (shorter than the header plus one
 * byte), TERN_ERR_MALFORMED (first byte not TERN_RELAY_TYPE, inner's fixed bit clear, or longer
 * than TERN_MAX_DATAGRAM), TERN_ERR_UNKNOWN_CID (no session has that channel),
 * TERN_ERR_AUTH (the source is not the address registered for that channel),
 * TERN_ERR_RATE_LIMITED (the session's byte budget is spent), TERN_ERR_INVALID_ARG (NULL).
 * A forwarded datagram keeps its session alive. */
int tern_relay_forward(tern_relay *r, uint64_t now, const tern_addr *from, uint8_t *data,
                       size_t len, tern_addr *to_out);

/* Frees the session one of whose channels is ch (the rendezvous server does this when a peer
 * that opened it leaves). TERN_ERR_NOT_FOUND when no live session has it. */
int tern_relay_close(tern_relay *r, const uint8_t ch[TERN_RELAY_CHANNEL_LEN]);
/* 1 when a live session has channel ch. */
int tern_relay_alive(const tern_relay *r, const uint8_t ch[TERN_RELAY_CHANNEL_LEN]);

/* When handle_expiry must next run; TERN_TIME_NEVER when no session exists. */
uint64_t tern_relay_next_deadline(const tern_relay *r);
/* Frees every session idle for idle_timeout_ns or more. */
void tern_relay_handle_expiry(tern_relay *r, uint64_t now);

typedef struct tern_relay_stats {
    uint64_t sessions;           /* live now */
    uint64_t opened, expired, open_refused, reused;
    uint64_t evicted;            /* freed to make room at a full target address */
    uint64_t closed;             /* freed by tern_relay_close */
    uint64_t fwd_packets, fwd_bytes;
    uint64_t drop_short;         /* TERN_ERR_TRUNCATED */
    uint64_t drop_malformed;     /* wrong type byte or inner fixed bit clear */
    uint64_t drop_oversize;      /* longer than TERN_MAX_DATAGRAM */
    uint64_t drop_unknown_channel;
    uint64_t drop_wrong_source;
    uint64_t drop_rate_limited;
    uint64_t mem_current;        /* bytes allocated through the hook now */
} tern_relay_stats;

void tern_relay_get_stats(const tern_relay *r, tern_relay_stats *st);

#ifdef __cplusplus
}
#endif
#endif
