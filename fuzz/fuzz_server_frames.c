/*
 * libFuzzer target: a hostile server against a client. fuzz_conn's other direction: a client
 * and a server endpoint complete a real handshake in memory, and the SERVER side (white box: the
 * server a client pinned is the attacker here, or whoever stole its key) sends what the input
 * says, sealed as genuine 1-RTT packets with the server connection's keys, into the client. The
 * client runs a rendezvous client (tern/rendezvous.h, "client") on that connection, as `tern`
 * does: for every input a fresh one registers, asks for an introduction to a fixed peer P and
 * places a call, so replies, introductions (connect_peer) and calls have state to hit.
 *
 * The first byte chooses the mode:
 *   even: frames. The rest is a sequence of (length byte, frames) records, fuzz_conn's format:
 *         each record is one packet; a record of 128 bytes or more comes from another server
 *         address (one of four; a client must not follow a server that moves). Flow frames on
 *         the server's flow IDs reach the rendezvous client through on_message, as any bytes a
 *         hostile server puts there would.
 *   odd:  rendezvous messages through the transport. The rest is a sequence of (u16 big-endian
 *         length, bytes) records, fuzz_rdv_client's format: the server sends each as one
 *         message on its flow (tern_flow_send), and the real transport fragments, seals,
 *         delivers and reassembles it before the rendezvous client sees it.
 * Timers run between records. Checked: no crash, no over-read, no leak (LeakSanitizer and the
 * rendezvous client's allocation hook, whose frees must name the size allocated and which must
 * be empty once the client is deleted); the client endpoint's accounted memory stays under
 * CLIENT_MEM_MAX whatever the server sends; the rendezvous client has no deadline left after
 * its expiry ran an hour later. The pair is rebuilt when the connection ends and every 32 inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "tern/rendezvous.h"

#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The client's accounted memory must stay below this, whatever the server sends (flow_window 64
 * fragments x max_flows 8 of reassembly, the rendezvous client, peer connections, slack). */
#define CLIENT_MEM_MAX (8u << 20)

static tern_endpoint *srv, *cli;
static tern_conn *cc, *sc; /* the client's connection and the server's side of it */
static tern_rdv_client *rc;
static tern_addr sa, ca;
static uint64_t now;
static unsigned runs;
static uint64_t mem_peak;

static int srv_accept(tern_conn *c, void *u)
{
    (void)u;
    sc = c;
    return 0;
}

static void srv_free(tern_conn *c, void *u)
{
    (void)u;
    if (sc == c) sc = NULL;
}

static int cli_accept(tern_conn *c, void *u)
{
    (void)u;
    return rc ? tern_rdv_client_accept(rc, c, now) : TERN_ERR_REFUSED;
}

static void cli_message(tern_conn *c, uint64_t flow, const uint8_t *d, size_t len, void *u)
{
    (void)u;
    if (rc) (void)tern_rdv_client_on_message(rc, c, flow, d, len, now);
}

static void cli_gone(tern_conn *c, void *u)
{
    (void)u;
    if (rc) tern_rdv_client_on_gone(rc, c, now);
    if (cc == c) cc = NULL;
}

static void cli_closed(tern_conn *c, int err, uint64_t code, const char *r, size_t rl, void *u)
{
    (void)err, (void)code, (void)r, (void)rl, (void)u;
    if (rc) tern_rdv_client_on_gone(rc, c, now);
}

/* Datagrams between the two; what the client sends elsewhere (punches, Initials to P's
 * candidates) is dropped. */
static void pump(void)
{
    fz_pump(cli, &ca, srv, &sa, now);
}

static void check_mem(void)
{
    tern_endpoint_stats st;
    tern_endpoint_get_stats(cli, &st);
    if (st.mem_current > mem_peak) mem_peak = st.mem_current;
    if (st.mem_current > CLIENT_MEM_MAX) {
        fprintf(stderr, "fuzz_server_frames: client holds %llu bytes\n",
                (unsigned long long)st.mem_current);
        fz_die("a hostile server made the client hold more than CLIENT_MEM_MAX");
    }
}

static void setup(void)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_SERVER_FRAMES_VERBOSE") != NULL;
    if (verbose && cli) fprintf(stderr, "client memory peak %llu\n", (unsigned long long)mem_peak);
    if (srv) tern_endpoint_del(srv);
    if (cli) tern_endpoint_del(cli);
    srv = cli = NULL;
    cc = sc = NULL;
    fz_rng_state = 17;
    tern_keypair skey, pkey;
    uint8_t priv[32];
    fz_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&skey, priv);
    fz_rand(priv, sizeof(priv), NULL);
    tern_keypair_from_private(&pkey, priv);
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    cfg.rand = fz_rand;
    cfg.settings.flow_window = 64;
    cfg.settings.max_flows = 64; /* the client opens one request flow per input */
    cfg.is_server = 1;
    cfg.has_static_key = 1;
    cfg.static_key = skey;
    cfg.callbacks.on_accept = srv_accept;
    cfg.callbacks.on_conn_free = srv_free;
    if (tern_endpoint_new(&cfg, 0, &srv) != TERN_OK) abort();
    /* the client: is_server with its own key, as a rendezvous client's endpoint must be */
    memset(&cfg.callbacks, 0, sizeof(cfg.callbacks));
    cfg.settings.max_flows = 8; /* flows the hostile server may open toward the client */
    cfg.static_key = pkey;
    cfg.callbacks.on_accept = cli_accept;
    cfg.callbacks.on_message = cli_message;
    cfg.callbacks.on_closed = cli_closed;
    cfg.callbacks.on_conn_free = cli_gone;
    if (tern_endpoint_new(&cfg, 0, &cli) != TERN_OK) abort();
    tern_addr_ipv4(&sa, 10, 0, 0, 1, 4433);
    tern_addr_ipv4(&ca, 10, 0, 0, 2, 5555);
    now = 1000;
    if (tern_endpoint_connect(cli, now, &ca, &sa, skey.pub, &cc) != TERN_OK) abort();
    pump();
    if (cc == NULL || sc == NULL || tern_conn_get_state(cc) != TERN_CONN_ESTABLISHED) abort();
}

static int up(void)
{
    return cc != NULL && sc != NULL && tern_conn_get_state(cc) == TERN_CONN_ESTABLISHED &&
           tern_conn_get_state(sc) == TERN_CONN_ESTABLISHED;
}

static void tick(void)
{
    now += TERN_NS_PER_MS;
    if (tern_endpoint_next_deadline(srv) <= now) tern_endpoint_handle_expiry(srv, now);
    if (tern_endpoint_next_deadline(cli) <= now) tern_endpoint_handle_expiry(cli, now);
    if (rc && tern_rdv_client_next_deadline(rc) <= now) tern_rdv_client_handle_expiry(rc, now);
    pump();
    check_mem();
}

/* One packet of frames from the server (sealed with its keys); from another server address
 * when `moved`. */
static void server_packet(const uint8_t *frames, size_t len, int moved, unsigned which)
{
    uint8_t pkt[TERN_MAX_DATAGRAM + 64];
    int n = tern__conn_seal(sc, now, pkt, sizeof(pkt), frames, len);
    if (n <= 0) return;
    tern_addr from = sa;
    if (moved) from.port = (uint16_t)(sa.port + 1 + (which & 3));
    tern_endpoint_recv(cli, now, &ca, &from, pkt, (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL || ++runs % 32 == 0 || !up()) setup();
    if (size == 0) return 0;
    tern_rdv_client_config cfg;
    tern_rdv_client_config_default(&cfg);
    cfg.mem = &fz_mem;
    cfg.local = ca;
    if (tern_rdv_client_new(&cfg, cc, &rc) != TERN_OK) abort();
    /* P: the peer the seeds' PEER_INFO describes (key 0x50 x 32), as in fuzz_rdv_client */
    uint8_t ppub[TERN_KEY_LEN], pid[TERN_PEER_ID_LEN];
    memset(ppub, 0x50, sizeof(ppub));
    tern_peer_id(ppub, pid);
    uint64_t call_id = 0;
    if (tern_rdv_client_register(rc, now, &ca, 1, NULL) != TERN_OK ||
        tern_rdv_client_introduce(rc, now, pid) != TERN_OK ||
        tern_rdv_client_call(rc, now, (const uint8_t *)"s", 1, (const uint8_t *)"m", 1, NULL, 0,
                             100, &call_id) != TERN_OK) {
        /* the connection cannot take requests any more (e.g. flows used up): start afresh */
        tern_rdv_client_del(rc);
        rc = NULL;
        setup();
        return 0;
    }
    pump();
    const uint8_t *p = data + 1, *end = data + size;
    unsigned k = 0;
    if ((data[0] & 1) == 0) {
        while (p < end && up()) {
            size_t len = *p++;
            if (len > (size_t)(end - p)) len = (size_t)(end - p);
            if (len) server_packet(p, len, p[-1] & 0x80, p[-1]);
            p += len;
            tick();
        }
    } else {
        uint64_t flow = 0;
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        if (up() && tern_flow_open(sc, &fc, &flow) == TERN_OK) {
            while (end - p >= 2 && up()) {
                size_t len = (size_t)p[0] << 8 | p[1];
                p += 2;
                if (len > (size_t)(end - p)) len = (size_t)(end - p);
                (void)tern_flow_send(sc, flow, now, p, len, -1);
                p += len;
                tick();
                if (++k == 4 && rc) tern_rdv_client_handle_expiry(rc, now + 60 * TERN_NS_PER_S);
            }
        }
    }
    for (int i = 0; i < 4; i++) tick();
    if (cc) (void)tern_rdv_client_accept(rc, cc, now);
    tern_rdv_client_handle_expiry(rc, now + 3600 * TERN_NS_PER_S);
    if (tern_rdv_client_next_deadline(rc) != TERN_TIME_NEVER)
        fz_die("the rendezvous client kept a deadline after its expiry ran an hour later");
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_SERVER_FRAMES_VERBOSE") != NULL;
    if (verbose) {
        tern_rdv_client_stats st;
        tern_rdv_client_get_stats(rc, &st);
        fprintf(stderr, "rdv client: rx %llu bad %llu unexpected %llu peer_conns %llu introduced %llu "
                        "replies %llu call_errors %llu group %llu presence %llu; conn %s\n",
                (unsigned long long)st.rx_messages, (unsigned long long)st.bad_messages,
                (unsigned long long)st.unexpected, (unsigned long long)st.peer_conns,
                (unsigned long long)st.introduced, (unsigned long long)st.replies,
                (unsigned long long)st.call_errors, (unsigned long long)st.group_msgs,
                (unsigned long long)st.presence, up() ? "up" : "down");
    }
    tern_rdv_client_del(rc);
    rc = NULL;
    if (fz_live != 0) fz_die("the rendezvous client left memory behind");
    return 0;
}
