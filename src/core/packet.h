/*
 * Packet headers, frames and transport parameters: encoders and bounded decoders.
 * docs/protocol.md gives the byte layout of everything here.
 */
#ifndef TERN_CORE_PACKET_H
#define TERN_CORE_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"

/* ---------------------------------------------------------------- long header */

typedef struct tern__long_hdr {
    uint8_t type;     /* TERN__PKT_* (meaningless when version == 0) */
    uint32_t version; /* 0: version negotiation */
    uint8_t dcid[TERN_CID_LEN];
    uint8_t scid[TERN_CID_LEN];
    /* Initial and Reject: which server key the sender means (TERN__KEY_HINT_LEN bytes) */
    const uint8_t *key_hint;
    /* Initial and Retry */
    const uint8_t *token;
    size_t token_len;
    /* Initial (Noise message 1) and Response (Noise message 2) */
    const uint8_t *body;
    size_t body_len;
    /* Initial: mac1 and the bytes it covers (from the first byte to the end of body) */
    const uint8_t *mac1;
    size_t mac1_covered;
    /* Retry: the DCID of the Initial it answers */
    uint8_t odcid[TERN_CID_LEN];
    /* Reject */
    uint64_t reject_code;
    /* Version negotiation: the versions offered (4 bytes each, big-endian) */
    const uint8_t *versions;
    size_t n_versions;
} tern__long_hdr;

/* Decodes a long-header packet. Errors: TERN_ERR_TRUNCATED, TERN_ERR_MALFORMED,
 * TERN_ERR_VERSION (a version other than 1 or 0: only flags, version and CIDs are filled). */
int tern__long_decode(const uint8_t *pkt, size_t len, tern__long_hdr *h);

/* Writes flags, version, dcid, scid; returns the cursor after them (NULL if out is too small). */
uint8_t *tern__long_encode_prefix(uint8_t *p, const uint8_t *end, uint8_t type, uint32_t version,
                                  const uint8_t dcid[TERN_CID_LEN],
                                  const uint8_t scid[TERN_CID_LEN]);

/* ---------------------------------------------------------------- short header */

typedef struct tern__short_hdr {
    uint8_t flags;
    uint8_t dcid[TERN_CID_LEN];
    uint64_t pn_truncated;
    size_t pn_len;  /* 1..4 */
    size_t hdr_len; /* bytes before the protected payload */
} tern__short_hdr;

int tern__short_decode(const uint8_t *pkt, size_t len, tern__short_hdr *h);
/* Writes a short header with a pn_len-byte truncated packet number. */
uint8_t *tern__short_encode(uint8_t *p, const uint8_t *end, int key_phase,
                            const uint8_t dcid[TERN_CID_LEN], uint64_t pn, size_t pn_len);
/* RFC 9000 appendix A.3: the full packet number closest to largest_received + 1. */
uint64_t tern__pn_decode(uint64_t largest_received, int have_largest, uint64_t truncated,
                         size_t pn_len);

/* ---------------------------------------------------------------- frames */

typedef struct tern__frame {
    uint64_t type;
    uint64_t id;                /* PING, PONG; PATH_CHALLENGE/RESPONSE data (8 bytes, big-endian) */
    uint64_t close_space;       /* CLOSE */
    uint64_t close_code;
    const uint8_t *data;        /* CLOSE reason, DATAGRAM payload */
    size_t data_len;
} tern__frame;

/* Decodes one frame at p. Returns the cursor after it, or NULL with *err set
 * (TERN_ERR_TRUNCATED, TERN_ERR_MALFORMED for an unknown type or a bad field). */
const uint8_t *tern__frame_decode(const uint8_t *p, const uint8_t *end, tern__frame *f, int *err);

uint8_t *tern__frame_put_ping(uint8_t *p, const uint8_t *end, uint64_t type, uint64_t id);
/* PATH_CHALLENGE or PATH_RESPONSE (type) with its 8 bytes of data. */
uint8_t *tern__frame_put_path(uint8_t *p, const uint8_t *end, uint64_t type, uint64_t data);
uint8_t *tern__frame_put_close(uint8_t *p, const uint8_t *end, uint64_t space, uint64_t code,
                               const uint8_t *reason, size_t reason_len);
uint8_t *tern__frame_put_datagram(uint8_t *p, const uint8_t *end, const uint8_t *data, size_t len);
size_t tern__frame_datagram_overhead(size_t len);

/* ---------------------------------------------------------------- transport parameters */

typedef struct tern__tparams {
    uint64_t idle_timeout_ms;
    uint64_t max_udp_payload;
    uint64_t max_datagram_frame;
    uint64_t flow_window;    /* fragments per flow the sender accepts */
    uint64_t max_flows;      /* flows the sender accepts open at once */
    uint64_t max_ack_delay_ms;
    uint8_t aeads[4];
    size_t n_aeads;
    uint8_t integrity_only;
    uint8_t has_reset_token;
    uint8_t has_cid;
    uint8_t reset_token[TERN__RESET_TOKEN_LEN];
    uint8_t cid[TERN_CID_LEN];
} tern__tparams;

/* Returns bytes written or TERN_ERR_BUFFER. */
int tern__tparams_encode(const tern__tparams *tp, uint8_t *out, size_t cap);
/* Unknown IDs are skipped; a repeated ID or a bad value is TERN_ERR_MALFORMED. */
int tern__tparams_decode(const uint8_t *p, size_t len, tern__tparams *tp);

#endif
