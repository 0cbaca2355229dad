/*
 * tern base: the vocabulary every layer of tern shares (docs/architecture.md). Addresses, the
 * memory and randomness hooks, time units and the relay header's wire form; error codes are in
 * tern/errors.h, included here. The core (tern/tern.h), STUN (tern/stun.h) and the rendezvous
 * layer build on this header; it depends on nothing but libc.
 */
#ifndef TERN_BASE_H
#define TERN_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tern/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_NS_PER_MS 1000000ull
#define TERN_NS_PER_S 1000000000ull
#define TERN_TIME_NEVER UINT64_MAX

/* ---------------------------------------------------------------- addresses */

enum { TERN_AF_NONE = 0, TERN_AF_INET = 4, TERN_AF_INET6 = 6 };

/* How packets travel to an address. UDP is the default (0: a zeroed tern_addr is UDP). On a
 * stream transport the driver carries each packet framed on one TCP connection (TLS 1.3 for
 * TERN_TRANSPORT_TLS) to that address (docs/protocol.md, "Stream transport"); the core treats a
 * path whose remote is a stream as reliable and ordered. */
enum { TERN_TRANSPORT_UDP = 0, TERN_TRANSPORT_TCP = 1, TERN_TRANSPORT_TLS = 2 };

/* An IP address and port, independent of any socket API. IPv4 uses ip[0..3]. */
typedef struct tern_addr {
    uint8_t family;    /* TERN_AF_* */
    uint8_t transport; /* TERN_TRANSPORT_* */
    uint16_t port;     /* host byte order */
    uint8_t ip[16];
} tern_addr;

/* A stream transport (TCP or TLS)? */
static inline int tern_addr_is_stream(const tern_addr *a)
{
    return a->transport != TERN_TRANSPORT_UDP;
}

void tern_addr_ipv4(tern_addr *a, uint8_t a0, uint8_t a1, uint8_t a2, uint8_t a3, uint16_t port);
/* Same family, address, port and transport. */
int tern_addr_equal(const tern_addr *a, const tern_addr *b);
/* Parses "1.2.3.4:5", "[::1]:5" or "host-less" forms, each optionally followed by "/udp",
 * "/tcp" or "/tls" (the transport; UDP without one); TERN_ERR_MALFORMED on anything else. */
int tern_addr_parse(tern_addr *a, const char *text);
/* Writes "1.2.3.4:5" or "[::1]:5" into buf, with "/tcp" or "/tls" after a stream transport's
 * address; returns buf ("?" when it does not fit). */
const char *tern_addr_format(const tern_addr *a, char *buf, size_t len);

/* ---------------------------------------------------------------- hooks */

typedef struct tern_mem {
    void *(*malloc)(size_t size, void *user);
    void (*free)(void *ptr, size_t size, void *user); /* size is what was asked for */
    void *user;
} tern_mem;

/* Fills dst with len bytes that must be unpredictable in production (libsodium's randombytes is
 * the default). A seeded PRNG makes a simulation repeatable. */
typedef void (*tern_rand_fn)(uint8_t *dst, size_t len, void *user);

/* ---------------------------------------------------------------- relay header */

/* A datagram to or from a relay (docs/protocol.md, section 9; tern/relay.h) is TERN_RELAY_TYPE,
 * the sender's or receiver's channel, then one whole tern packet. The core writes and reads it
 * on relayed paths, the relay rewrites its channel, the load generator forges it: all through
 * these two functions. */
#define TERN_RELAY_TYPE 0x81          /* first byte: long bit set, fixed bit (0x40) clear */
#define TERN_RELAY_CHANNEL_LEN 8      /* relay channel IDs */
#define TERN_RELAY_HDR_LEN (1 + TERN_RELAY_CHANNEL_LEN)

/* Writes the header for channel ch at out (TERN_RELAY_HDR_LEN bytes); returns its length. */
static inline size_t tern_relay_hdr_put(uint8_t *out, const uint8_t ch[TERN_RELAY_CHANNEL_LEN])
{
    out[0] = TERN_RELAY_TYPE;
    memcpy(out + 1, ch, TERN_RELAY_CHANNEL_LEN);
    return TERN_RELAY_HDR_LEN;
}

/* The channel of a relay datagram of len bytes, NULL when it is not one (too short to carry a
 * header and at least one byte of packet, or another first byte). */
static inline const uint8_t *tern_relay_hdr_get(const uint8_t *data, size_t len)
{
    if (len <= TERN_RELAY_HDR_LEN || data[0] != TERN_RELAY_TYPE) return NULL;
    return data + 1;
}

#ifdef __cplusplus
}
#endif

#endif
