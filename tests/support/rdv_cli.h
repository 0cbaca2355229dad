/*
 * rdv_cli: rendezvous clients of an rdv_node on the simulated network, for the rendezvous tests.
 * Each is a tnet_node connected to the server that sends rendezvous messages on one flow (opened
 * with its first message) and records what comes back: a count and the last copy of each kind,
 * group members, presence events, errors by code, group fan-out copies, payloads. It can answer
 * CALLs (auto_reply), stop reading (pause_rx) and watch for introductions of one peer.
 *
 * rdv_world is a server with n such clients, connected (and optionally registered). Nothing is
 * global: each client knows its sim, so worlds in one test may overlap.
 */
#ifndef TERN_TESTS_RDV_CLI_H
#define TERN_TESTS_RDV_CLI_H

#include "support/rdv_node.h"
#include "support/tnet.h"
#include "tern/rendezvous.h"

typedef struct rdv_cli {
    tnet_node n;
    sim *s;                  /* the sim it runs in */
    uint64_t flow;           /* the rendezvous flow (valid when has_flow) */
    int has_flow;
    uint64_t got[TERN_RDV_KIND_MAX_ + 1];      /* messages received, by kind */
    tern_rdv_msg last[TERN_RDV_KIND_MAX_ + 1]; /* pointers cleared: only fixed fields kept */
    uint64_t last_at[TERN_RDV_KIND_MAX_ + 1];  /* when the last of each kind came */
    uint8_t members[TERN_RDV_MAX_MEMBERS * TERN_PEER_ID_LEN]; /* of the last JOINED */
    uint8_t payload[256];    /* the last payload (cut to this size) */
    size_t payload_len;
    uint8_t group_seen[64];  /* GROUP_MSG payload[0] -> copies received */
    uint8_t watch_id[TERN_PEER_ID_LEN]; /* INTRODUCED naming this peer: counted in watch_hits */
    uint64_t watch_hits;
    int pause_rx;            /* an attacker that never reads: pauses the server's flow */
    uint64_t presence_join, presence_leave;
    uint64_t errors[32];     /* ERROR messages by code */
    int auto_reply;          /* provider: answer CALL with REPLY(status 0, the same payload) */
    uint64_t decode_fail;    /* messages that did not decode */
} rdv_cli;

/* Starts a client at `at` (keys and randomness from stream `stream`; settings may be NULL) and
 * connects it to r; the handshake completes as the sim runs. Requires success. */
void rdv_cli_start_at(rdv_cli *k, sim *s, const rdv_node *r, const tern_addr *at, uint32_t stream,
                      const tern_settings *settings);
/* Client i at 10.x.y.z:40000 (x.y.z = i), stream i. */
void rdv_cli_start(rdv_cli *k, sim *s, const rdv_node *r, uint32_t i);
/* Sends m on the client's rendezvous flow (opened on first use); requires success. */
void rdv_cli_send(rdv_cli *k, const tern_rdv_msg *m);
/* The same without requiring success (a flood may fill the client's own send buffer). */
int rdv_cli_try(rdv_cli *k, const tern_rdv_msg *m);
/* REGISTER with one LOCAL candidate (192.168.1.7:5000). */
void rdv_cli_register(rdv_cli *k);
/* A group message of this kind (JOIN, LEAVE, GROUP_MSG, ...) to group, payload optional. */
void rdv_cli_group(rdv_cli *k, uint8_t kind, const char *group, const uint8_t *payload,
                   size_t len);
/* Removes it from its sim and checks its allocator is clean. */
void rdv_cli_free(rdv_cli *k);

/* A sim (5 ms default one-way delay) with a server and n clients. */
typedef struct rdv_world {
    sim *s;
    rdv_node srv;
    rdv_cli *c;  /* n clients, c[i] is client i + 1 */
    uint32_t n;
} rdv_world;

/* Builds the world: server with cfg (NULL: defaults), n clients connected, and with reg each
 * registered (REGISTERED received). Requires success. */
void rdv_world_init(rdv_world *w, uint32_t n, const tern_rdv_config *cfg, int reg);
/* Frees the clients, the server and the sim (allocators checked clean). */
void rdv_world_free(rdv_world *w);

#endif
