/*
 * Rendezvous (tern/rendezvous.h) on the simulated network: the codec and tokens, then a server
 * endpoint running tern_rdv_server with real tern clients: registration and introductions
 * (known, unknown, before registering; with a relay: CHANNEL and RELAY to both sides and a
 * session between their public addresses, or neither when the relay is full), 1,000 group members with exactly-once fan-out, presence
 * on join, leave and disconnect, rate limits, RPC (reply, no such service, timeout, provider
 * gone, service taken), tokens on the server (required, forged, expired, valid), bad input to the
 * server's decoder, and the server's memory per registered peer.
 *
 * The server node (support/rdv_node.h) wraps the endpoint and the rendezvous server in one sim
 * node, so the call timeouts run on the virtual clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/rdv_cli.h"
#include "tern/rendezvous.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* ---------------------------------------------------------------- codec and tokens */

static void test_codec_roundtrip_and_bad_input(void)
{
    uint8_t buf[TERN_RDV_MAX_MSG];
    tern_rdv_msg m, d;
    tern_rdv_msg_init(&m, TERN_RDV_PEER_INFO);
    m.has_peer_id = m.has_pubkey = m.has_nonce = 1;
    memset(m.peer_id, 1, sizeof(m.peer_id));
    memset(m.pubkey, 2, sizeof(m.pubkey));
    memset(m.nonce, 3, sizeof(m.nonce));
    m.n_cands = 3;
    m.cands[0].kind = TERN_RDV_CAND_LOCAL;
    tern_addr_ipv4(&m.cands[0].addr, 192, 168, 0, 2, 1234);
    m.cands[1].kind = TERN_RDV_CAND_PUBLIC;
    TT_REQUIRE(tern_addr_parse(&m.cands[1].addr, "[2001:db8::1]:443") == TERN_OK);
    m.cands[2].kind = TERN_RDV_CAND_RELAY;
    tern_addr_ipv4(&m.cands[2].addr, 203, 0, 113, 9, 4433);
    int n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_REQUIRE(tern_rdv_decode(buf, (size_t)n, &d) == TERN_OK);
    TT_CHECK_EQ_INT(d.kind, TERN_RDV_PEER_INFO);
    TT_CHECK(memcmp(d.peer_id, m.peer_id, 32) == 0 && memcmp(d.nonce, m.nonce, 16) == 0);
    TT_CHECK_EQ_INT(d.n_cands, 3);
    for (int i = 0; i < 3; i++) {
        TT_CHECK(tern_addr_equal(&d.cands[i].addr, &m.cands[i].addr));
        TT_CHECK_EQ_INT(d.cands[i].kind, m.cands[i].kind);
    }
    /* every prefix is truncated or (for an empty TLV list) missing fields; never a crash */
    for (int i = 0; i < n; i++) TT_CHECK(tern_rdv_decode(buf, (size_t)i, &d) < 0);
    /* a CALL with a full payload */
    static uint8_t big[TERN_RDV_MAX_PAYLOAD];
    memset(big, 0xab, sizeof(big));
    tern_rdv_msg_init(&m, TERN_RDV_CALL);
    m.service = (const uint8_t *)"svc", m.service_len = 3;
    m.method = (const uint8_t *)"get", m.method_len = 3;
    m.has_call_id = 1, m.call_id = 0x0102030405060708ull;
    m.has_timeout = 1, m.timeout_ms = 1500;
    m.payload = big, m.payload_len = sizeof(big), m.has_payload = 1;
    n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_REQUIRE(tern_rdv_decode(buf, (size_t)n, &d) == TERN_OK);
    TT_CHECK_EQ_U64(d.call_id, m.call_id);
    TT_CHECK_EQ_INT(d.payload_len, sizeof(big));
    TT_CHECK_EQ_INT(tern_rdv_encode(&m, buf, 100), TERN_ERR_BUFFER);
    /* missing a required field, on both sides */
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    TT_CHECK_EQ_INT(tern_rdv_encode(&m, buf, sizeof(buf)), TERN_ERR_INVALID_ARG);
    const uint8_t no_peer[] = {1, TERN_RDV_INTRODUCE};
    TT_CHECK_EQ_INT(tern_rdv_decode(no_peer, sizeof(no_peer), &d), TERN_ERR_MALFORMED);
    const uint8_t bad_version[] = {2, TERN_RDV_REGISTER};
    TT_CHECK_EQ_INT(tern_rdv_decode(bad_version, sizeof(bad_version), &d), TERN_ERR_VERSION);
    const uint8_t bad_kind[] = {1, 99};
    TT_CHECK_EQ_INT(tern_rdv_decode(bad_kind, sizeof(bad_kind), &d), TERN_ERR_MALFORMED);
    const uint8_t repeated[] = {1, TERN_RDV_JOIN, 6, 0, 1, 'a', 6, 0, 1, 'b'};
    TT_CHECK_EQ_INT(tern_rdv_decode(repeated, sizeof(repeated), &d), TERN_ERR_MALFORMED);
    const uint8_t empty_name[] = {1, TERN_RDV_JOIN, 6, 0, 0};
    TT_CHECK_EQ_INT(tern_rdv_decode(empty_name, sizeof(empty_name), &d), TERN_ERR_MALFORMED);
    const uint8_t long_tlv[] = {1, TERN_RDV_JOIN, 6, 0, 9, 'a'};
    TT_CHECK_EQ_INT(tern_rdv_decode(long_tlv, sizeof(long_tlv), &d), TERN_ERR_TRUNCATED);
    const uint8_t ext[] = {1, TERN_RDV_JOIN, 0x90, 0, 2, 'x', 'y', 6, 0, 1, 'g'};
    TT_CHECK_EQ_INT(tern_rdv_decode(ext, sizeof(ext), &d), TERN_OK);
    const uint8_t unknown_low[] = {1, TERN_RDV_JOIN, 0x40, 0, 0, 6, 0, 1, 'g'};
    TT_CHECK_EQ_INT(tern_rdv_decode(unknown_low, sizeof(unknown_low), &d), TERN_ERR_MALFORMED);
    const uint8_t bad_cand[] = {1, TERN_RDV_REGISTER, 3, 0, 8, 1, 5, 0, 80, 1, 2, 3, 4};
    TT_CHECK_EQ_INT(tern_rdv_decode(bad_cand, sizeof(bad_cand), &d), TERN_ERR_MALFORMED);
    /* CHANNEL (0x11): exactly 8 bytes, once, after MEMBERS in the canonical order */
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCED);
    m.has_peer_id = m.has_pubkey = m.has_nonce = 1;
    m.n_cands = 1;
    m.cands[0].kind = TERN_RDV_CAND_RELAY;
    tern_addr_ipv4(&m.cands[0].addr, 0, 0, 0, 0, 4433);
    m.has_channel = 1;
    memcpy(m.channel, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    n = tern_rdv_encode(&m, buf, sizeof(buf));
    TT_REQUIRE(n > 11);
    TT_CHECK(buf[n - 11] == 0x11 && buf[n - 10] == 0 && buf[n - 9] == 8 && buf[n - 1] == 8);
    TT_REQUIRE(tern_rdv_decode(buf, (size_t)n, &d) == TERN_OK);
    TT_CHECK(d.has_channel && memcmp(d.channel, m.channel, 8) == 0);
    TT_CHECK(d.n_cands == 1 && d.cands[0].kind == TERN_RDV_CAND_RELAY && d.cands[0].addr.port == 4433);
    const uint8_t ch7[] = {1, TERN_RDV_JOIN, 6, 0, 1, 'g', 0x11, 0, 7, 1, 2, 3, 4, 5, 6, 7};
    TT_CHECK_EQ_INT(tern_rdv_decode(ch7, sizeof(ch7), &d), TERN_ERR_MALFORMED);
    const uint8_t ch9[] = {1, TERN_RDV_JOIN, 6, 0, 1, 'g', 0x11, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    TT_CHECK_EQ_INT(tern_rdv_decode(ch9, sizeof(ch9), &d), TERN_ERR_MALFORMED);
    const uint8_t ch2x[] = {1, TERN_RDV_JOIN, 6, 0, 1, 'g', 0x11, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
                            0x11, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    TT_CHECK_EQ_INT(tern_rdv_decode(ch2x, sizeof(ch2x), &d), TERN_ERR_MALFORMED);
    const uint8_t t12[] = {1, TERN_RDV_JOIN, 6, 0, 1, 'g', 0x12, 0, 0};
    TT_CHECK_EQ_INT(tern_rdv_decode(t12, sizeof(t12), &d), TERN_ERR_MALFORMED);
}

static void test_tokens(void)
{
    uint8_t secret[32], other[32], tok[TERN_RDV_TOKEN_LEN];
    memset(secret, 7, sizeof(secret));
    memset(other, 8, sizeof(other));
    const uint8_t *g = (const uint8_t *)"lobby";
    TT_REQUIRE(tern_rdv_token_make(secret, TERN_RDV_TOKEN_JOIN, g, 5, 1000, tok) == TERN_OK);
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, g, 5, 999, tok), 0);
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, g, 5, 1000, tok), 0);
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, g, 5, 1001, tok),
                    TERN_RDV_E_TOKEN_EXPIRED);
    TT_CHECK_EQ_INT(tern_rdv_token_check(other, TERN_RDV_TOKEN_JOIN, g, 5, 999, tok),
                    TERN_RDV_E_TOKEN_FORGED);
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_OFFER, g, 5, 999, tok),
                    TERN_RDV_E_TOKEN_FORGED);
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, g, 4, 999, tok),
                    TERN_RDV_E_TOKEN_FORGED);
    tok[0] ^= 1; /* a later expiry, MAC unchanged: forged, not "valid longer" */
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, g, 5, 999, tok),
                    TERN_RDV_E_TOKEN_FORGED);
    tok[0] ^= 1;
    tok[20] ^= 0x10;
    TT_CHECK_EQ_INT(tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, g, 5, 999, tok),
                    TERN_RDV_E_TOKEN_FORGED);
}

/* ---------------------------------------------------------------- directory */

static void test_register_and_introduce(void)
{
    rdv_world w;
    rdv_world_init(&w, 3, NULL, 0);
    rdv_cli *a = &w.c[0], *b = &w.c[1], *c = &w.c[2];
    /* before REGISTER: not registered */
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    tern_peer_id(b->n.key.pub, m.peer_id);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(a->errors[TERN_RDV_E_NOT_REGISTERED], 1);

    rdv_cli_register(a);
    rdv_cli_register(b);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(a->got[TERN_RDV_REGISTERED] == 1);
    TT_CHECK(tern_addr_equal(&a->last[TERN_RDV_REGISTERED].cands[0].addr, &a->n.addr));
    TT_CHECK_EQ_INT(a->last[TERN_RDV_REGISTERED].cands[0].kind, TERN_RDV_CAND_PUBLIC);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).registered, 2);

    uint64_t t0 = sim_now(w.s);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(a->got[TERN_RDV_PEER_INFO] == 1 && b->got[TERN_RDV_INTRODUCED] == 1);
    const tern_rdv_msg *pi = &a->last[TERN_RDV_PEER_INFO], *in = &b->last[TERN_RDV_INTRODUCED];
    TT_CHECK(memcmp(pi->pubkey, b->n.key.pub, 32) == 0);
    TT_CHECK(memcmp(in->pubkey, a->n.key.pub, 32) == 0);
    uint8_t aid[32];
    tern_peer_id(a->n.key.pub, aid);
    TT_CHECK(memcmp(in->peer_id, aid, 32) == 0);
    TT_CHECK(memcmp(pi->nonce, in->nonce, TERN_RDV_NONCE_LEN) == 0);
    TT_CHECK_EQ_INT(pi->n_cands, 2); /* the local one it reported and the one the server sees */
    TT_CHECK(pi->cands[0].kind == TERN_RDV_CAND_LOCAL && pi->cands[1].kind == TERN_RDV_CAND_PUBLIC);
    TT_CHECK(tern_addr_equal(&pi->cands[1].addr, &b->n.addr));
    TT_CHECK(tern_addr_equal(&in->cands[1].addr, &a->n.addr));
    TT_CHECK_MSG(a->last_at[TERN_RDV_PEER_INFO] - t0 <= 12 * MS, "introduction took %llu ns",
                 (unsigned long long)(a->last_at[TERN_RDV_PEER_INFO] - t0));

    /* c is connected but not registered: unknown, at once (one round trip) */
    tern_peer_id(c->n.key.pub, m.peer_id);
    t0 = sim_now(w.s);
    rdv_cli_send(a, &m);
    memset(m.peer_id, 0x5a, 32); /* nobody */
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(a->errors[TERN_RDV_E_UNKNOWN_PEER], 2);
    TT_CHECK(a->last[TERN_RDV_ERROR].has_peer_id && a->last[TERN_RDV_ERROR].peer_id[0] == 0x5a);
    TT_CHECK(a->last_at[TERN_RDV_ERROR] - t0 <= 12 * MS);
    TT_CHECK_EQ_INT(c->got[TERN_RDV_INTRODUCED], 0);
    /* to oneself: invalid */
    memcpy(m.peer_id, aid, 32);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(a->errors[TERN_RDV_E_INVALID], 1);
    /* b leaves: unknown from then on */
    tern_conn_close(b->n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).registered, 1);
    tern_peer_id(b->n.key.pub, m.peer_id);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_INT(a->errors[TERN_RDV_E_UNKNOWN_PEER], 3);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).introductions, 1);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- relay */

static void test_introduce_with_relay(void)
{
    tt_mem rmem;
    tt_mem_init(&rmem);
    tt_rng rrng;
    tt_rng_seed(&rrng, tt_seed() ^ 0x7e1a7);
    tern_relay_config rcfg;
    tern_relay_config_default(&rcfg);
    rcfg.mem = &rmem.mem;
    rcfg.rand = tt_rand_fill;
    rcfg.rand_user = &rrng;
    rcfg.max_sessions = 1;
    tern_relay *relay = NULL;
    TT_REQUIRE(tern_relay_new(&rcfg, &relay) == TERN_OK);

    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.has_relay = 1;
    tern_addr_ipv4(&cfg.relay, 0, 0, 0, 0, 4433); /* wildcard: "where you reach this server" */
    cfg.relay_sessions = relay;
    rdv_world w;
    rdv_world_init(&w, 3, &cfg, 1);
    rdv_cli *a = &w.c[0], *b = &w.c[1], *c = &w.c[2];
    TT_CHECK_EQ_INT(a->last[TERN_RDV_REGISTERED].n_cands, 2);
    TT_CHECK_EQ_INT(a->last[TERN_RDV_REGISTERED].cands[1].kind, TERN_RDV_CAND_RELAY);
    TT_CHECK(!a->last[TERN_RDV_REGISTERED].has_channel);

    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    tern_peer_id(b->n.key.pub, m.peer_id);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(a->got[TERN_RDV_PEER_INFO] == 1 && b->got[TERN_RDV_INTRODUCED] == 1);
    const tern_rdv_msg *pi = &a->last[TERN_RDV_PEER_INFO], *in = &b->last[TERN_RDV_INTRODUCED];
    /* both sides: LOCAL, PUBLIC, RELAY, and each its own channel */
    TT_REQUIRE(pi->n_cands == 3 && in->n_cands == 3);
    TT_CHECK(pi->cands[2].kind == TERN_RDV_CAND_RELAY && in->cands[2].kind == TERN_RDV_CAND_RELAY);
    TT_CHECK(tern_addr_equal(&pi->cands[2].addr, &cfg.relay));
    TT_REQUIRE(pi->has_channel && in->has_channel);
    TT_CHECK(memcmp(pi->channel, in->channel, TERN_RELAY_CHANNEL_LEN) != 0);
    tern_relay_stats rs;
    tern_relay_get_stats(relay, &rs);
    TT_CHECK_EQ_U64(rs.sessions, 1);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).relay_opened, 1);
    /* the session joins the two public addresses with those channels: A's datagram on A's
     * channel reaches B's address carrying B's channel, and the reverse */
    uint8_t d[64] = {TERN_RELAY_TYPE};
    memcpy(d + 1, pi->channel, TERN_RELAY_CHANNEL_LEN);
    d[TERN_RELAY_HDR_LEN] = 0x40;
    tern_addr to;
    TT_CHECK_EQ_INT(tern_relay_forward(relay, sim_now(w.s), &a->n.addr, d, sizeof(d), &to),
                    (int)sizeof(d));
    TT_CHECK(tern_addr_equal(&to, &b->n.addr));
    TT_CHECK(memcmp(d + 1, in->channel, TERN_RELAY_CHANNEL_LEN) == 0);
    TT_CHECK_EQ_INT(tern_relay_forward(relay, sim_now(w.s), &b->n.addr, d, sizeof(d), &to),
                    (int)sizeof(d));
    TT_CHECK(tern_addr_equal(&to, &a->n.addr));
    TT_CHECK(memcmp(d + 1, pi->channel, TERN_RELAY_CHANNEL_LEN) == 0);
    /* from C (a registered peer, but not in this session): dropped */
    TT_CHECK_EQ_INT(tern_relay_forward(relay, sim_now(w.s), &c->n.addr, d, sizeof(d), &to),
                    TERN_ERR_AUTH);

    /* the relay is full (max_sessions 1): introduced without RELAY and CHANNEL, and counted */
    tern_peer_id(c->n.key.pub, m.peer_id);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(a->got[TERN_RDV_PEER_INFO] == 2 && c->got[TERN_RDV_INTRODUCED] == 1);
    pi = &a->last[TERN_RDV_PEER_INFO];
    in = &c->last[TERN_RDV_INTRODUCED];
    TT_CHECK(!pi->has_channel && !in->has_channel);
    TT_CHECK_EQ_INT(pi->n_cands, 2);
    TT_CHECK_EQ_INT(in->n_cands, 2);
    for (size_t i = 0; i < pi->n_cands; i++) TT_CHECK(pi->cands[i].kind != TERN_RDV_CAND_RELAY);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).relay_refused, 1);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).introductions, 2);

    /* idle for the relay's timeout: the session goes and its memory with it */
    tern_relay_handle_expiry(relay, sim_now(w.s) + rcfg.idle_timeout_ns);
    tern_relay_get_stats(relay, &rs);
    TT_CHECK_EQ_U64(rs.sessions, 0);
    rdv_world_free(&w);
    tern_relay_del(relay);
    tt_mem_check_clean(&rmem, "relay");
}

/* ---------------------------------------------------------------- groups */

static void test_group_1000_members_exactly_once(void)
{
    enum { N = 1000, SENDERS = 20 };
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.group_rate = 100000, cfg.group_burst = 100000;
    /* every join announced to every member (the public-server defaults send no presence in a
     * group over 256 members, and at most 20 events per second per group) */
    cfg.presence_max_members = 0;
    cfg.presence_rate = 0;
    rdv_world w;
    rdv_world_init(&w, N, &cfg, 1);
    for (uint32_t i = 0; i < N; i++) rdv_cli_group(&w.c[i], TERN_RDV_JOIN, "big", NULL, 0);
    tnet_run_ms(w.s, 2000);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).joins, N);
    for (uint32_t i = 0; i < N; i++) {
        rdv_cli *k = &w.c[i];
        TT_REQUIRE(k->got[TERN_RDV_JOINED] == 1);
        const tern_rdv_msg *j = &k->last[TERN_RDV_JOINED];
        TT_CHECK_EQ_U64(j->count, i + 1);
        size_t want = i < 32 ? i : 32;
        TT_CHECK_MSG(j->n_members == want, "member %u: bootstrap %zu, want %zu", i, j->n_members,
                     want);
        uint8_t self[32];
        tern_peer_id(k->n.key.pub, self);
        for (size_t x = 0; x < j->n_members; x++) {
            TT_CHECK(memcmp(k->members + 32 * x, self, 32) != 0);
            for (size_t y = 0; y < x; y++)
                TT_CHECK(memcmp(k->members + 32 * x, k->members + 32 * y, 32) != 0);
        }
        /* every later joiner was announced to this one */
        TT_CHECK_EQ_U64(k->presence_join, N - 1 - i);
    }
    for (uint8_t m = 0; m < SENDERS; m++) {
        uint8_t payload[100];
        memset(payload, m, sizeof(payload));
        rdv_cli_group(&w.c[(m * 37) % N], TERN_RDV_GROUP_MSG, "big", payload, sizeof(payload));
    }
    tnet_run_ms(w.s, 2000);
    uint64_t wrong = 0;
    for (uint32_t i = 0; i < N; i++)
        for (uint8_t m = 0; m < SENDERS; m++) {
            int sender = (uint32_t)(m * 37) % N == i;
            if (w.c[i].group_seen[m] != (sender ? 0 : 1)) wrong++;
        }
    TT_CHECK_EQ_U64(wrong, 0);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    TT_CHECK_EQ_U64(st.fanout_msgs, (uint64_t)SENDERS * (N - 1));
    TT_CHECK_EQ_U64(st.tx_failed, 0);
    printf("  1000 members: rendezvous memory %llu bytes (%.0f per member over the fixed %llu)\n",
           (unsigned long long)st.mem_current,
           (double)(st.mem_current - w.srv.base_mem) / N, (unsigned long long)w.srv.base_mem);
    rdv_world_free(&w);
}

static void test_leave_and_presence(void)
{
    rdv_world w;
    rdv_world_init(&w, 3, NULL, 1);
    rdv_cli *a = &w.c[0], *b = &w.c[1], *c = &w.c[2];
    rdv_cli_group(a, TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    rdv_cli_group(b, TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    rdv_cli_group(c, TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(a->presence_join, 2);
    TT_CHECK_EQ_U64(b->presence_join, 1);
    TT_CHECK_EQ_U64(c->presence_join, 0);
    TT_CHECK_EQ_U64(c->last[TERN_RDV_JOINED].count, 3);
    TT_CHECK_EQ_U64(c->last[TERN_RDV_JOINED].n_members, 2);
    /* joining twice changes nothing */
    rdv_cli_group(c, TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(c->got[TERN_RDV_JOINED], 2);
    TT_CHECK_EQ_U64(a->presence_join, 2);

    rdv_cli_group(b, TERN_RDV_LEAVE, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(a->presence_leave, 1);
    TT_CHECK_EQ_U64(c->presence_leave, 1);
    uint8_t bid[32];
    tern_peer_id(b->n.key.pub, bid);
    TT_CHECK(memcmp(a->last[TERN_RDV_PRESENCE].peer_id, bid, 32) == 0);
    /* b is no longer a member */
    const uint8_t hi[] = {9};
    rdv_cli_group(b, TERN_RDV_GROUP_MSG, "g", hi, 1);
    rdv_cli_group(b, TERN_RDV_LEAVE, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(b->errors[TERN_RDV_E_NOT_MEMBER], 2);
    TT_CHECK_EQ_U64(a->group_seen[9], 0);
    /* c disconnects: a hears LEAVE */
    tern_conn_close(c->n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).peers, 2);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).leaves, 2);
    TT_CHECK_EQ_U64(a->presence_leave, 2);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).groups, 1);
    rdv_cli_group(a, TERN_RDV_LEAVE, "g", NULL, 0);
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).groups, 0);
    rdv_world_free(&w);
}

static void test_rate_limits(void)
{
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.peer_rate = 10, cfg.peer_burst = 5;
    cfg.group_rate = 10, cfg.group_burst = 8;
    rdv_world w;
    rdv_world_init(&w, 3, &cfg, 1);
    for (int i = 0; i < 3; i++) rdv_cli_group(&w.c[i], TERN_RDV_JOIN, "r", NULL, 0);
    tnet_run_ms(w.s, 50);
    /* one peer sends 20 at once: its bucket lets 5 through */
    for (uint8_t m = 0; m < 20; m++) rdv_cli_group(&w.c[0], TERN_RDV_GROUP_MSG, "r", &m, 1);
    tnet_run_ms(w.s, 50);
    uint64_t got = 0;
    for (int m = 0; m < 20; m++) got += w.c[1].group_seen[m];
    TT_CHECK_EQ_U64(got, 5);
    TT_CHECK_EQ_U64(w.c[0].errors[TERN_RDV_E_RATE_LIMITED], 15);
    TT_CHECK_EQ_U64(w.c[0].last[TERN_RDV_ERROR].count, 15);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    TT_CHECK_EQ_U64(st.rate_dropped_peer, 15);
    /* the group's bucket (8 deep, 5 used, ~1 refilled) stops a second sender early */
    for (uint8_t m = 30; m < 35; m++) rdv_cli_group(&w.c[1], TERN_RDV_GROUP_MSG, "r", &m, 1);
    tnet_run_ms(w.s, 50);
    got = 0;
    for (int m = 30; m < 35; m++) got += w.c[2].group_seen[m];
    TT_CHECK_RANGE(got, 3, 4);
    TT_CHECK(rdv_node_stats(&w.srv).rate_dropped_group >= 1);
    /* after a second both buckets have refilled */
    tnet_run_ms(w.s, 1000);
    uint8_t m = 40;
    rdv_cli_group(&w.c[0], TERN_RDV_GROUP_MSG, "r", &m, 1);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(w.c[2].group_seen[40], 1);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- RPC */

static void call(rdv_cli *k, const char *svc, uint64_t id, uint32_t timeout_ms, const char *payload)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_CALL);
    m.service = (const uint8_t *)svc, m.service_len = strlen(svc);
    m.method = (const uint8_t *)"echo", m.method_len = 4;
    m.has_call_id = 1, m.call_id = id;
    if (timeout_ms) m.has_timeout = 1, m.timeout_ms = timeout_ms;
    m.payload = (const uint8_t *)payload, m.payload_len = strlen(payload), m.has_payload = 1;
    rdv_cli_send(k, &m);
}

static void offer(rdv_cli *k, const char *svc)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_OFFER);
    m.service = (const uint8_t *)svc, m.service_len = strlen(svc);
    rdv_cli_send(k, &m);
}

static void test_rpc(void)
{
    rdv_world w;
    rdv_world_init(&w, 4, NULL, 1);
    rdv_cli *prov = &w.c[0], *caller = &w.c[1], *slow = &w.c[2], *other = &w.c[3];
    prov->auto_reply = 1;
    offer(prov, "echo-svc");
    offer(slow, "slow-svc");
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(prov->got[TERN_RDV_OFFERED], 1);
    offer(other, "echo-svc"); /* taken */
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(other->errors[TERN_RDV_E_SERVICE_TAKEN], 1);

    /* a reply */
    call(caller, "echo-svc", 77, 0, "hello");
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(prov->got[TERN_RDV_CALL] == 1 && caller->got[TERN_RDV_REPLY] == 1);
    uint8_t cid[32];
    tern_peer_id(caller->n.key.pub, cid);
    TT_CHECK(memcmp(prov->last[TERN_RDV_CALL].peer_id, cid, 32) == 0);
    TT_CHECK_EQ_U64(caller->last[TERN_RDV_REPLY].call_id, 77);
    TT_CHECK_EQ_U64(caller->last[TERN_RDV_REPLY].status, 0);
    TT_CHECK(caller->payload_len == 5 && memcmp(caller->payload, "hello", 5) == 0);

    /* no such service: at once */
    uint64_t t0 = sim_now(w.s);
    call(caller, "nobody", 78, 0, "x");
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(caller->errors[TERN_RDV_E_NO_SERVICE], 1);
    TT_CHECK_EQ_U64(caller->last[TERN_RDV_ERROR].call_id, 78);
    TT_CHECK(caller->last_at[TERN_RDV_ERROR] - t0 <= 12 * MS);

    /* a timeout: the slow provider never answers within 300 ms */
    t0 = sim_now(w.s);
    call(caller, "slow-svc", 79, 300, "x");
    tnet_run_ms(w.s, 400);
    TT_CHECK_EQ_U64(slow->got[TERN_RDV_CALL], 1);
    TT_CHECK_EQ_U64(caller->errors[TERN_RDV_E_TIMEOUT], 1);
    TT_CHECK_EQ_U64(caller->last[TERN_RDV_ERROR].call_id, 79);
    uint64_t took = caller->last_at[TERN_RDV_ERROR] - t0;
    TT_CHECK_MSG(took >= 300 * MS && took <= 320 * MS, "timeout after %llu ms",
                 (unsigned long long)(took / MS));
    /* its late reply is dropped and counted */
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_REPLY);
    r.has_call_id = 1, r.call_id = slow->last[TERN_RDV_CALL].call_id;
    r.has_status = 1, r.payload = (const uint8_t *)"", r.has_payload = 1;
    rdv_cli_send(slow, &r);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).late_replies, 1);
    TT_CHECK_EQ_U64(caller->got[TERN_RDV_REPLY], 1);
    /* a reply for another provider's call is not accepted either */
    call(caller, "slow-svc", 80, 5000, "y");
    tnet_run_ms(w.s, 30);
    r.call_id = slow->last[TERN_RDV_CALL].call_id;
    rdv_cli_send(other, &r);
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).late_replies, 2);
    /* the provider goes away with call 80 in flight */
    tern_conn_close(slow->n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(caller->errors[TERN_RDV_E_PROVIDER_GONE], 1);
    TT_CHECK_EQ_U64(caller->last[TERN_RDV_ERROR].call_id, 80);
    /* and the service with it */
    call(caller, "slow-svc", 81, 0, "z");
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(caller->errors[TERN_RDV_E_NO_SERVICE], 2);
    /* a caller that leaves with calls in flight leaves nothing behind */
    prov->auto_reply = 0;
    call(caller, "echo-svc", 82, 10000, "w");
    tnet_run_ms(w.s, 30);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).calls_pending, 1);
    tern_conn_close(caller->n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).calls_pending, 0);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).replies, 1);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- tokens on the server */

static void test_server_tokens(void)
{
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.has_secret = 1;
    memset(cfg.secret, 0x42, sizeof(cfg.secret));
    cfg.require_register_token = cfg.require_join_token = cfg.require_offer_token = 1;
    cfg.unix_offset_s = 1700000000;
    rdv_world w;
    rdv_world_init(&w, 2, &cfg, 0);
    rdv_cli *a = &w.c[0], *b = &w.c[1];
    uint8_t aid[32], forged_secret[32];
    tern_peer_id(a->n.key.pub, aid);
    memset(forged_secret, 0x43, sizeof(forged_secret));
    uint64_t now_unix = 1700000000;

    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    rdv_cli_send(a, &m); /* none */
    m.has_token = 1;
    tern_rdv_token_make(forged_secret, TERN_RDV_TOKEN_REGISTER, aid, 32, now_unix + 60, m.token);
    rdv_cli_send(a, &m); /* forged */
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_REGISTER, aid, 32, now_unix - 1, m.token);
    rdv_cli_send(a, &m); /* expired */
    uint8_t bid[32];
    tern_peer_id(b->n.key.pub, bid);
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_REGISTER, bid, 32, now_unix + 60, m.token);
    rdv_cli_send(a, &m); /* someone else's */
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_TOKEN_REQUIRED], 1);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_TOKEN_FORGED], 2);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_TOKEN_EXPIRED], 1);
    TT_CHECK_EQ_U64(a->got[TERN_RDV_REGISTERED], 0);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).token_rejected, 4);
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_REGISTER, aid, 32, now_unix + 60, m.token);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->got[TERN_RDV_REGISTERED], 1);

    /* join: a token for another group is forged for this one; time passes and it expires */
    tern_rdv_msg_init(&m, TERN_RDV_JOIN);
    m.group = (const uint8_t *)"vip", m.group_len = 3;
    m.has_token = 1;
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_JOIN, (const uint8_t *)"pub", 3,
                        now_unix + 60, m.token);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_TOKEN_FORGED], 3);
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_JOIN, (const uint8_t *)"vip", 3,
                        now_unix + 2, m.token);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->got[TERN_RDV_JOINED], 1);
    tnet_run_ms(w.s, 3000);
    rdv_cli_group(a, TERN_RDV_LEAVE, "vip", NULL, 0);
    rdv_cli_send(a, &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_TOKEN_EXPIRED], 2);
    /* offer needs its own kind of token: a JOIN token for the same name is forged */
    tern_rdv_msg o;
    tern_rdv_msg_init(&o, TERN_RDV_OFFER);
    o.service = (const uint8_t *)"vip", o.service_len = 3;
    o.has_token = 1;
    memcpy(o.token, m.token, sizeof(o.token));
    rdv_cli_send(a, &o);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_TOKEN_FORGED], 4);
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_OFFER, (const uint8_t *)"vip", 3,
                        now_unix + 3600, o.token);
    rdv_cli_send(a, &o);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(a->got[TERN_RDV_OFFERED], 1);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- bad input, memory */

static void test_bad_input_is_counted_and_harmless(void)
{
    rdv_world w;
    rdv_world_init(&w, 2, NULL, 1);
    rdv_cli *a = &w.c[0], *b = &w.c[1];
    rdv_cli_group(a, TERN_RDV_JOIN, "g", NULL, 0);
    rdv_cli_group(b, TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w.s, 50);
    static const uint8_t bad[][12] = {
        {0}, {1}, {9, 1}, {1, 0}, {1, 77}, {1, TERN_RDV_JOIN, 6, 0, 200, 'g'},
        {1, TERN_RDV_JOIN, 6, 0, 1, 'g', 6, 0, 1, 'g'}, {1, TERN_RDV_CALL, 9, 0, 3, 1, 2, 3},
    };
    static const size_t len[] = {0, 1, 2, 2, 2, 6, 10, 8};
    uint64_t t = sim_now(w.s);
    for (size_t i = 0; i < sizeof(len) / sizeof(len[0]); i++)
        TT_REQUIRE(tern_flow_send(a->n.conn, a->flow, t, bad[i], len[i], -1) == TERN_OK);
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_PRESENCE); /* a server-to-client kind */
    m.group = (const uint8_t *)"g", m.group_len = 1;
    m.has_peer_id = m.has_event = 1, m.event = 1;
    rdv_cli_send(a, &m);
    const uint8_t hi[] = {5};
    rdv_cli_group(a, TERN_RDV_GROUP_MSG, "g", hi, 1); /* and then a good one */
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).bad_messages, 9);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_MALFORMED], 8);
    TT_CHECK_EQ_U64(a->errors[TERN_RDV_E_INVALID], 1);
    TT_CHECK_EQ_U64(b->group_seen[5], 1);
    TT_CHECK(a->n.closed == 0 && b->n.closed == 0);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).registered, 2);
    rdv_world_free(&w);
}

static void test_memory_per_peer_and_replacement(void)
{
    enum { N = 300 };
    rdv_world w;
    rdv_world_init(&w, N, NULL, 0);
    uint64_t before = rdv_node_stats(&w.srv).mem_current;
    for (uint32_t i = 0; i < N; i++) rdv_cli_register(&w.c[i]);
    tnet_run_ms(w.s, 100);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    TT_CHECK_EQ_U64(st.registered, N);
    double per = (double)(st.mem_current - w.srv.base_mem) / N;
    printf("  %d registered peers: %llu bytes in the rendezvous server, %llu of them fixed "
           "(%.0f per peer; %.0f before REGISTER)\n", N, (unsigned long long)st.mem_current,
           (unsigned long long)w.srv.base_mem, per, (double)(before - w.srv.base_mem) / N);
    TT_CHECK_RANGE(per, 1, 512);
    /* the same key on a second connection replaces the first */
    rdv_cli *dup = calloc(1, sizeof(*dup));
    TT_REQUIRE(dup != NULL);
    tern_addr a2;
    tern_addr_ipv4(&a2, 172, 16, 0, 9, 41000);
    rdv_cli_start_at(dup, w.s, &w.srv, &a2, 1, NULL); /* stream of client 0: same key */
    TT_REQUIRE(memcmp(dup->n.key.pub, w.c[0].n.key.pub, 32) == 0);
    tnet_run_ms(w.s, 100);
    rdv_cli_register(dup);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(dup->got[TERN_RDV_REGISTERED], 1);
    TT_CHECK_EQ_INT(w.c[0].n.closed, 1);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).registered, N);
    /* introductions now reach the new address */
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    tern_peer_id(dup->n.key.pub, m.peer_id);
    rdv_cli_send(&w.c[1], &m);
    tnet_run_ms(w.s, 50);
    TT_CHECK(tern_addr_equal(&w.c[1].last[TERN_RDV_PEER_INFO].cands[1].addr, &a2));
    TT_CHECK_EQ_U64(dup->got[TERN_RDV_INTRODUCED], 1);
    rdv_cli_free(dup);
    free(dup);
    rdv_world_free(&w);
}

static const tt_case cases[] = {
    TT_CASE(test_codec_roundtrip_and_bad_input),
    TT_CASE(test_tokens),
    TT_CASE(test_register_and_introduce),
    TT_CASE(test_introduce_with_relay),
    TT_CASE(test_leave_and_presence),
    TT_CASE(test_rate_limits),
    TT_CASE(test_rpc),
    TT_CASE(test_server_tokens),
    TT_CASE(test_bad_input_is_counted_and_harmless),
    TT_CASE(test_memory_per_peer_and_replacement),
    TT_CASE(test_group_1000_members_exactly_once),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
