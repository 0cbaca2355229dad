/*
 * libFuzzer target: a whole connection's frame processing. A client and a server endpoint
 * complete a real handshake in memory; then every input is split into frame payloads, each
 * sealed as a genuine 1-RTT packet with the client's keys (white box: a malicious peer holds
 * valid keys), delivered to the server, and the server's replies are fed back to the client.
 * Flow data, forwards, windows, ACK ranges and closes all run with real state behind them.
 * Records of 128 bytes or more come from one of four other client addresses (path validation
 * and migration). The pair is rebuilt when the server closes the connection or every 512 inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"

#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tern_endpoint *srv, *cli;
static tern_conn *cc;
static tern_addr sa, ca;
static uint64_t now;
static unsigned runs;

static void pump(void)
{
    fz_pump(cli, &ca, srv, &sa, now);
}

static void setup(void)
{
    if (srv) tern_endpoint_del(srv);
    if (cli) tern_endpoint_del(cli);
    srv = cli = NULL;
    cc = NULL;
    fz_rng_state = 7;
    tern_keypair key;
    uint8_t priv[32];
    fz_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&key, priv);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.rand = fz_rand;
    cfg.settings.flow_window = 64;
    cfg.settings.max_flows = 8;
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = key;
    if (tern_endpoint_new(&cfg, 0, &srv) != TERN_OK) abort();
    cfg.is_server = 0;
    cfg.has_static_key = 0;
    if (tern_endpoint_new(&cfg, 0, &cli) != TERN_OK) abort();
    tern_addr_ipv4(&sa, 10, 0, 0, 1, 4433);
    tern_addr_ipv4(&ca, 10, 0, 0, 2, 5555);
    now = 1000;
    if (tern_endpoint_connect(cli, now, &ca, &sa, key.pub, &cc) != TERN_OK) abort();
    pump();
    if (tern_conn_get_state(cc) != TERN_CONN_ESTABLISHED) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL || ++runs % 512 == 0 || tern_conn_get_state(cc) != TERN_CONN_ESTABLISHED)
        setup();
    /* the input is a sequence of (length byte, frames) records, one packet each */
    const uint8_t *p = data, *end = data + size;
    while (p < end && tern_conn_get_state(cc) == TERN_CONN_ESTABLISHED) {
        size_t len = *p++;
        if (len > (size_t)(end - p)) len = (size_t)(end - p);
        if (len == 0) continue;
        uint8_t pkt[TERN_MAX_DATAGRAM];
        uint64_t pn = cc->tx.next_pn++;
        uint8_t *q = tern__short_encode(pkt, pkt + sizeof(pkt), 0, cc->remote_cid, pn, 4);
        size_t hl = (size_t)(q - pkt);
        if (tern__aead_seal(&cc->keys.tx, pn, 0, pkt, hl, p, len, q) != TERN_OK) abort();
        /* records with a length of 128 or more come from another address (the client moved):
         * candidate paths, PATH_CHALLENGE/RESPONSE and migration run too */
        tern_addr from = ca;
        if (p[-1] & 0x80) from.port = (uint16_t)(ca.port + 1 + (p[-1] & 3));
        tern_endpoint_recv(srv, now, &sa, &from, pkt, hl + len + 16);
        p += len;
        now += 1000000;
        tern_endpoint_handle_expiry(srv, now);
        tern_endpoint_handle_expiry(cli, now);
        pump();
    }
    return 0;
}
