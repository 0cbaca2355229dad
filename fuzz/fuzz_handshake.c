/*
 * libFuzzer target: whole datagrams into the endpoint's receive path, on a server and on a client
 * with a handshake in progress (so Response, Retry, Reject and version negotiation are parsed),
 * then the send path. Deterministic randomness; the endpoints persist across inputs so state
 * that earlier inputs built is exercised too, and are rebuilt every 4096 inputs. The server
 * also expects an introduced peer and the client also opens a peer connection (hole punching:
 * relay-wrapped packets and punches, nonce of 16 bytes 0x07, reach their parsers).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "tern/tern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 42;

static void det_rand(uint8_t *dst, size_t len, void *user)
{
    (void)user;
    for (size_t i = 0; i < len; i++) {
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        dst[i] = (uint8_t)(rng_state >> 56);
    }
}

static tern_endpoint *server, *client;
static tern_keypair server_key;
static tern_addr sa, ca;
static unsigned runs;
static uint64_t now;

static void setup(void)
{
    if (server) tern_endpoint_del(server);
    if (client) tern_endpoint_del(client);
    rng_state = 42;
    uint8_t priv[32];
    det_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&server_key, priv);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.rand = det_rand;
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = server_key;
    cfg.settings.max_half_open = 4;
    tern_endpoint_new(&cfg, 0, &server);
    cfg.is_server = 0;
    cfg.has_static_key = 0;
    tern_endpoint_new(&cfg, 0, &client);
    tern_addr_ipv4(&sa, 10, 0, 0, 1, 4433);
    tern_addr_ipv4(&ca, 10, 0, 0, 2, 5555);
    tern_conn *c;
    tern_endpoint_connect(client, 0, &ca, &sa, server_key.pub, &c);
    tern_peer_target t;
    tern_peer_target_default(&t);
    memset(t.nonce, 7, sizeof(t.nonce));
    memcpy(t.peer_pub, server_key.pub, TERN_KEY_LEN);
    t.cands[t.n_cands++] = sa;
    t.has_relay = 1;
    t.relay.addr = sa;
    t.relay_after_ns = 0;
    tern_endpoint_connect_peer(client, 0, &ca, &t, &c);
    t.cands[0] = ca;
    det_rand(t.peer_pub, TERN_KEY_LEN, NULL);
    tern_endpoint_expect_peer(server, 0, &sa, &t);
    now = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (server == NULL || ++runs % 4096 == 0) setup();
    if (size < 1) return 0;
    uint8_t *copy = malloc(size);
    if (copy == NULL) return 0;
    memcpy(copy, data + 1, size - 1);
    now += (uint64_t)(data[0] & 0x0f) * 50000000ull;
    tern_endpoint *ep = (data[0] & 0x80) ? client : server;
    tern_endpoint_recv(ep, now, ep == client ? &ca : &sa, ep == client ? &sa : &ca, copy,
                       size - 1);
    free(copy);
    tern_endpoint_handle_expiry(ep, now);
    static uint8_t buf[16 * TERN_MAX_DATAGRAM];
    tern_datagram d[16];
    while (tern_endpoint_send(ep, now, d, 16, buf, sizeof(buf)) > 0) {
    }
    return 0;
}
