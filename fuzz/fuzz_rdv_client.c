/*
 * libFuzzer target for the rendezvous client (tern/rendezvous.h, "client"): what a hostile or
 * broken rendezvous server can send it. A peer endpoint (is_server, with a key) and a server
 * endpoint complete a real handshake in memory; for every input a fresh client on that
 * connection registers, asks for an introduction to a fixed peer P (the seeds hold a valid
 * PEER_INFO for P, so connect_peer runs too) and places one call (call ID 1), then the input is
 * split into messages (u16 big-endian length, bytes) handed to tern_rdv_client_on_message as if
 * they had arrived from the server. The client's expiry runs in the middle and at the end; the
 * client must never crash, over-read or leak, whatever it is told. The pair of endpoints is
 * rebuilt every 32 inputs (each client opens a flow of its own, and peer connections accumulate).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tern/rendezvous.h"

#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tern_endpoint *srv, *peer;
static tern_conn *cc;
static tern_addr sa, pa;
static uint64_t now;
static unsigned runs;

static void pump(void)
{
    fz_pump(peer, &pa, srv, &sa, now);
}

static void setup(void)
{
    if (srv) tern_endpoint_del(srv);
    if (peer) tern_endpoint_del(peer);
    srv = peer = NULL;
    cc = NULL;
    fz_rng_state = 11;
    tern_keypair skey, pkey;
    uint8_t priv[32];
    fz_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&skey, priv);
    fz_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&pkey, priv);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.rand = fz_rand;
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = skey;
    if (tern_endpoint_new(&cfg, 0, &srv) != TERN_OK) abort();
    cfg.static_key = pkey;
    if (tern_endpoint_new(&cfg, 0, &peer) != TERN_OK) abort();
    tern_addr_ipv4(&sa, 10, 0, 0, 1, 4433);
    tern_addr_ipv4(&pa, 10, 0, 0, 2, 5555);
    now = 1000;
    if (tern_endpoint_connect(peer, now, &pa, &sa, skey.pub, &cc) != TERN_OK) abort();
    pump();
    if (tern_conn_get_state(cc) != TERN_CONN_ESTABLISHED) abort();
}

static void on_call(tern_rdv_client *rc, const uint8_t *s, size_t sl, const uint8_t *m, size_t ml,
                    uint64_t id, const uint8_t *caller, uint32_t t, const uint8_t *d, size_t len,
                    void *u)
{
    (void)s, (void)sl, (void)m, (void)ml, (void)caller, (void)t, (void)u;
    (void)tern_rdv_client_reply(rc, now, id, 0, d, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL || ++runs % 32 == 0 || tern_conn_get_state(cc) != TERN_CONN_ESTABLISHED)
        setup();
    tern_rdv_client_config cfg;
    tern_rdv_client_config_default(&cfg);
    cfg.local = pa;
    cfg.callbacks.on_call = on_call;
    tern_rdv_client *rc = NULL;
    if (tern_rdv_client_new(&cfg, cc, &rc) != TERN_OK) abort();
    /* P: the peer the seeds' PEER_INFO describes (key 0x50 x 32) */
    uint8_t ppub[TERN_KEY_LEN], pid[TERN_PEER_ID_LEN];
    memset(ppub, 0x50, sizeof(ppub));
    tern_peer_id(ppub, pid);
    tern_addr cand = pa;
    uint64_t call_id = 0;
    if (tern_rdv_client_register(rc, now, &cand, 1, NULL) != TERN_OK ||
        tern_rdv_client_introduce(rc, now, pid) != TERN_OK ||
        tern_rdv_client_call(rc, now, (const uint8_t *)"s", 1, (const uint8_t *)"m", 1, NULL, 0,
                             100, &call_id) != TERN_OK || call_id != 1)
        abort();
    const uint8_t *p = data, *end = data + size;
    unsigned k = 0;
    while (end - p >= 2) {
        size_t len = (size_t)p[0] << 8 | p[1];
        p += 2;
        if (len > (size_t)(end - p)) len = (size_t)(end - p);
        if (tern_rdv_client_on_message(rc, cc, 1, p, len, now) != 1) abort();
        p += len;
        if (++k == 4) tern_rdv_client_handle_expiry(rc, now + 60 * TERN_NS_PER_S);
    }
    if (tern_rdv_client_hold(rc, cc, now)) /* a held handshake: decided after the hold */
        (void)tern_rdv_client_hold(rc, cc, now + TERN_RDV_CLIENT_HOLD_NS);
    (void)tern_rdv_client_accept(rc, cc, now);
    tern_rdv_client_handle_expiry(rc, now + 3600 * TERN_NS_PER_S);
    if (tern_rdv_client_next_deadline(rc) != TERN_TIME_NEVER) abort();
    tern_rdv_client_del(rc);
    now += TERN_NS_PER_MS;
    pump();
    return 0;
}
