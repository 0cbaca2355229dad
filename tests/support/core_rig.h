/*
 * core_rig: one bare connection for white-box tests of the core's modules (recovery, path MTU
 * discovery, paths), driven by calling the module directly: no handshake, no network, no sim.
 *
 * A client endpoint (counting allocator, seeded PRNG) holds one connection made with
 * tern__conn_new, put in the ESTABLISHED state by hand: 1-RTT keys from fixed secrets
 * (ChaCha20-Poly1305), its loss recovery allocated and ready, the active path 198.51.100.7:50000
 * -> 192.0.2.1:4433, validated. Nothing else of the handshake has run: a test sets what its
 * module reads. Includes the core's internal headers (the test's target has src/ on its path).
 */
#ifndef TERN_TESTS_CORE_RIG_H
#define TERN_TESTS_CORE_RIG_H

#include "core/conn.h"
#include "support/tt.h"

typedef struct core_rig {
    tt_mem mem;
    tt_rng rng;
    tern_endpoint *ep;
    tern_conn *c;
    tern_addr local, remote; /* the active path */
    uint64_t now;            /* the test's clock (starts at 0) */
} core_rig;

/* settings may be NULL (tern_settings_default). Requires success (TT_REQUIRE). */
void core_rig_init(core_rig *g, const tern_settings *settings);
/* Deletes the endpoint (and the connection) and checks the allocator is clean. */
void core_rig_free(core_rig *g);

#endif
