/*
 * The handshake's state in each connection (c->hs): written by handshake.c; conn.c frees it when
 * the handshake ends (release_handshake) and path_probe.c resends the packet on candidate paths.
 */
#ifndef TERN_CORE_HANDSHAKE_H
#define TERN_CORE_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "core/noise.h"
#include "core/packet.h"
#include "tern/tern.h"

typedef struct tern__hs {
    tern__noise *noise;
    uint8_t server_pub[TERN_KEY_LEN];  /* client: the pinned key */
    uint8_t *pkt;                      /* the Initial (client) or Response (server) to resend */
    size_t pkt_len;
    int pending;                       /* pkt must go out */
    uint8_t token[TERN__MAX_TOKEN_LEN];
    size_t token_len;
    int retries;
    int tx_since_retry;
    int auth_failures;
    uint64_t start, deadline, retx_at, backoff;
    uint8_t initial_dcid[TERN_CID_LEN]; /* the DCID of the client's Initial */
    int in_initial_map;
    int held;                          /* server: on_accept_hold held it at least once */
} tern__hs;

#endif
