/*
 * Untrusted input: every truncation of every packet type, random datagrams of 0 to 1500 bytes,
 * random bytes behind valid-looking headers, bogus lengths and unknown versions, delivered to a
 * server and a client that hold an established connection. Each datagram lives in a heap block of
 * exactly its size, so ASan catches any read past the end. Every drop must be counted once, and
 * the connection must carry data afterwards as if nothing happened.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/packet.h"
#include "support/tnet.h"

#define MS (1000000ull)

static tern_addr SA, CA;

typedef struct capture {
    uint8_t pkt[8][TERN_MAX_DATAGRAM];
    size_t len[8];
    int n;
    uint8_t kinds_seen;
} capture;

static void capture_trace(void *user, const sim_trace_event *ev)
{
    capture *c = user;
    if (ev->kind != SIM_TR_SEND || ev->len == 0 || c->n >= 8) return;
    int kind = (ev->data[0] & 0x80) ? (ev->data[0] >> 4 & 3) : 4 + (ev->from && tern_addr_equal(ev->from, &CA));
    if (c->kinds_seen & (1u << kind)) return;
    c->kinds_seen |= (uint8_t)(1u << kind);
    memcpy(c->pkt[c->n], ev->data, ev->len);
    c->len[c->n] = ev->len;
    c->n++;
}

static uint64_t total_drops(const tern_endpoint_stats *st)
{
    return st->drop_truncated + st->drop_malformed + st->drop_version + st->drop_auth +
           st->drop_replay + st->drop_unknown_cid + st->drop_rate_limited + st->drop_ignored;
}

typedef struct checker {
    tnet_node *node;
    const tern_addr *from;
    uint64_t rejected, accepted;
} checker;

/* Delivers data[0..len) from an exact-size heap copy; checks the drop was counted. */
static void deliver(sim *s, checker *ck, const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    TT_REQUIRE(copy != NULL);
    if (len) memcpy(copy, data, len);
    tern_endpoint_stats before = tnet_stats(ck->node);
    int rc = tern_endpoint_recv(ck->node->ep, sim_now(s), &ck->node->addr, ck->from, copy, len);
    tern_endpoint_stats after = tnet_stats(ck->node);
    free(copy);
    TT_CHECK_MSG(rc <= 0 && !tern_err_is_fatal(rc), "recv returned %d", rc);
    if (rc < 0) {
        ck->rejected++;
        TT_CHECK_MSG(total_drops(&after) == total_drops(&before) + 1,
                     "drop (%s) of a %zu-byte datagram not counted exactly once",
                     tern_strerror(rc), len);
    } else {
        ck->accepted++;
    }
}

static void test_bad_input(void)
{
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&CA, 198, 51, 100, 7, 50000);
    sim *s = sim_new(tt_seed());
    tnet_node srv, cli, other;
    tnet_node_init(&srv, s, &SA, 1, NULL, 1);
    tnet_node_init(&cli, s, &CA, 0, NULL, 2);
    tern_addr oa;
    tern_addr_ipv4(&oa, 198, 51, 100, 8, 50000);
    tnet_node_init(&other, s, &oa, 0, NULL, 3);
    tnet_link(s, &SA, &CA, 10, 0, 0);
    capture cap = {0};
    sim_set_trace(s, capture_trace, &cap);
    tnet_connect(s, &cli, &srv, NULL);
    /* a second client with the wrong key provokes a Reject */
    uint8_t wrong[TERN_KEY_LEN];
    memcpy(wrong, srv.key.pub, sizeof(wrong));
    wrong[5] ^= 0x10;
    tern_conn *oc;
    TT_REQUIRE(tern_endpoint_connect(other.ep, 0, &oa, &SA, wrong, &oc) == TERN_OK);
    sim_run_until(s, 100 * MS);
    tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"payload", 7);
    tern_conn_send_datagram(srv.conn, sim_now(s), (const uint8_t *)"payload", 7);
    sim_run_until(s, 200 * MS);
    sim_set_trace(s, NULL, NULL);
    TT_REQUIRE(cli.established && srv.established);
    TT_CHECK_MSG(cap.n >= 5, "captured %d packet kinds", cap.n);

    /* TERN_CORPUS_DIR=fuzz/corpus writes the captured packets as fuzzer seeds */
    const char *dir = getenv("TERN_CORPUS_DIR");
    for (int i = 0; dir && i < cap.n; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/packet/seed-%d", dir, i);
        FILE *f = fopen(path, "wb");
        if (f) { fwrite(cap.pkt[i], 1, cap.len[i], f); fclose(f); }
        snprintf(path, sizeof(path), "%s/handshake/seed-%d", dir, i);
        f = fopen(path, "wb");
        /* first byte: 0x80 = to the client, else to the server */
        uint8_t sel = (cap.pkt[i][0] & 0x80) && (cap.pkt[i][0] >> 4 & 3) != 0 ? 0x80 : 0x00;
        if (f) { fwrite(&sel, 1, 1, f); fwrite(cap.pkt[i], 1, cap.len[i], f); fclose(f); }
    }

    checker to_srv = {&srv, &CA, 0, 0}, to_cli = {&cli, &SA, 0, 0};
    /* every truncation of every packet kind, to both sides */
    for (int i = 0; i < cap.n; i++) {
        for (size_t l = 0; l < cap.len[i]; l++) {
            deliver(s, &to_srv, cap.pkt[i], l);
            deliver(s, &to_cli, cap.pkt[i], l);
        }
    }
    /* random datagrams, and random bytes behind plausible first bytes / known CIDs */
    tt_rng rng;
    tt_rng_seed(&rng, sim_derive_seed(s, 77));
    uint8_t buf[TERN_MAX_DATAGRAM + 100];
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)tt_rng_below(&rng, TERN_MAX_DATAGRAM + 101);
        tt_rand_fill(buf, len, &rng);
        int shape = (int)tt_rng_below(&rng, 6);
        if (len > 0 && shape == 1) buf[0] = (uint8_t)(0xc0 | (buf[0] & 0x30)); /* long */
        if (len > 5 && shape == 1) memcpy(buf + 1, "\x54\x4e\x00\x01", 4);   /* v1 */
        if (len > 0 && shape == 2) buf[0] = (uint8_t)(0x40 | (buf[0] & 0x03)); /* short */
        if (shape == 3 && len > 9 && cap.n > 0) memcpy(buf, cap.pkt[cap.n - 1], 9); /* real CID */
        if (shape == 4 && len > 21 && cap.n > 0) memcpy(buf, cap.pkt[0], 21);
        if (shape == 5 && len > 30) {
            /* bogus varint lengths right after a real Initial's header */
            memcpy(buf, cap.pkt[0], 29);
            memset(buf + 29, 0xff, 8);
        }
        deliver(s, (i & 1) ? &to_srv : &to_cli, buf, len);
    }
    /* unknown versions, full size */
    for (uint32_t v = 2; v < 200; v += 7) {
        memcpy(buf, cap.pkt[0], 1200);
        tern__put_u32(buf + 1, buf + 5, v);
        deliver(s, &to_srv, buf, 1200);
    }
    TT_CHECK(to_srv.rejected > 1000 && to_cli.rejected > 1000);

    /* nothing else was lost: the connection still carries data both ways */
    sim_run_until(s, sim_now(s) + 100 * MS);
    uint64_t before_s = srv.datagrams, before_c = cli.datagrams;
    TT_CHECK_EQ_INT(tern_conn_send_datagram(cli.conn, sim_now(s), (const uint8_t *)"a", 1), TERN_OK);
    TT_CHECK_EQ_INT(tern_conn_send_datagram(srv.conn, sim_now(s), (const uint8_t *)"b", 1), TERN_OK);
    sim_run_until(s, sim_now(s) + 100 * MS);
    TT_CHECK_EQ_U64(srv.datagrams, before_s + 1);
    TT_CHECK_EQ_U64(cli.datagrams, before_c + 1);
    TT_CHECK_EQ_INT(srv.closed + cli.closed, 0);
    tnet_node_free(&other, s);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static const tt_case cases[] = {
    TT_CASE(test_bad_input),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
