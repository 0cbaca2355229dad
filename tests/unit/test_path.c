/*
 * White-box tests of src/core/path.c on the bare connection of support/core_rig: the
 * anti-amplification rule (an unvalidated path gets at most 3x the bytes it sent us; a handed
 * candidate gets probe_tries datagrams besides; our own relay route and a validated path are
 * not limited), new source addresses taken on at new_paths_per_s (bursts of twice that) and
 * the candidate table's limit, PATH_CHALLENGE answers rate-limited per candidate, and
 * validation by PATH_RESPONSE moving a client off its relay.
 */
#include <string.h>

#include "core/path_int.h"
#include "support/core_rig.h"

#define MS (1000000ull)
#define S (1000000000ull)

static tern__rx rx_from(const core_rig *g, const tern_addr *remote, uint64_t now)
{
    tern__rx rx;
    memset(&rx, 0, sizeof(rx));
    rx.now = now;
    rx.local = &g->local;
    rx.remote = remote;
    rx.cand = -1;
    return rx;
}

static void addr_n(tern_addr *a, uint32_t i)
{
    tern_addr_ipv4(a, 203, 0, (uint8_t)(113 + i / 250), (uint8_t)(1 + i % 250), 40000);
}

static void test_three_times_rule(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    tern__path p;
    tern_addr far;
    addr_n(&far, 1);
    tern__path_set(&p, &g.local, &far, 0, NULL);
    /* nothing received: nothing may go */
    TT_CHECK(!tern__path_may_send(c, &p, 1));
    /* 100 bytes in: 300 out, not one more */
    p.rx_bytes = 100;
    TT_CHECK(tern__path_may_send(c, &p, 300));
    TT_CHECK(!tern__path_may_send(c, &p, 301));
    tern__path_count_sent(&p, 250);
    TT_CHECK_EQ_U64(p.tx_bytes, 250);
    TT_CHECK_EQ_U64(p.tx_dgrams, 1);
    TT_CHECK(tern__path_may_send(c, &p, 50));
    TT_CHECK(!tern__path_may_send(c, &p, 51));
    /* more received, more allowed */
    p.rx_bytes += 20;
    TT_CHECK(tern__path_may_send(c, &p, 110));
    TT_CHECK(!tern__path_may_send(c, &p, 111));
    /* validated: no limit */
    p.validated = 1;
    TT_CHECK(tern__path_may_send(c, &p, 1000000));
    core_rig_free(&g);
}

static void test_handed_candidates_get_probe_tries(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    uint32_t tries = g.ep->s.probe_tries;
    TT_CHECK_EQ_INT(tries, 30); /* the default */
    tern__path p;
    tern_addr far;
    addr_n(&far, 2);
    tern__path_set(&p, &g.local, &far, 0, NULL);
    p.handed = 1;
    /* an introduction's candidate that never answers: probe_tries datagrams, of any size */
    for (uint32_t i = 0; i < tries; i++) {
        TT_REQUIRE_MSG(tern__path_may_send(c, &p, 1200), "datagram %u refused", i);
        TT_CHECK(!tern__path_exhausted(c, &p));
        tern__path_count_sent(&p, 1200);
    }
    TT_CHECK(!tern__path_may_send(c, &p, 1));
    TT_CHECK(tern__path_exhausted(c, &p));
    /* once it answers the 3x rule applies on top (what it was sent counts) */
    p.rx_bytes = 12000;
    TT_CHECK(!tern__path_exhausted(c, &p));
    TT_CHECK(tern__path_may_send(c, &p, 3 * 12000 - tries * 1200));
    TT_CHECK(!tern__path_may_send(c, &p, 3 * 12000 - tries * 1200 + 1));
    core_rig_free(&g);
}

static void test_relay_route_is_not_limited(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    tern__p2p *p2p = tern__p2p_get(c);
    TT_REQUIRE(p2p != NULL);
    tern_addr relay;
    tern_addr_ipv4(&relay, 192, 0, 2, 1, 4433);
    const uint8_t ch[TERN_RELAY_CHANNEL_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t other[TERN_RELAY_CHANNEL_LEN] = {8, 7, 6, 5, 4, 3, 2, 1};
    p2p->has_relay = 1;
    p2p->relay.addr = relay;
    memcpy(p2p->relay.channel, ch, sizeof(ch));
    tern__path p;
    tern__path_set(&p, &g.local, &relay, 1, ch);
    TT_CHECK(tern__path_may_send(c, &p, 100000)); /* the relay forwards only to our peer */
    /* the same relay on another channel is not our route: 3x applies */
    tern__path_set(&p, &g.local, &relay, 1, other);
    TT_CHECK(!tern__path_may_send(c, &p, 1));
    core_rig_free(&g);
}

static void test_new_sources_rate_limited(void)
{
    core_rig g;
    tern_settings s;
    tern_settings_default(&s);
    s.new_paths_per_s = 2; /* bursts of 4, then one per 500 ms */
    core_rig_init(&g, &s);
    tern_conn *c = g.c;
    uint64_t now = 1 * S;
    /* the active path is the active path */
    tern__rx rx = rx_from(&g, &g.remote, now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), -1);
    TT_CHECK_EQ_INT(rx.cand, -1);
    tern_addr a[10];
    for (uint32_t i = 0; i < 10; i++) addr_n(&a[i], 10 + i);
    for (int i = 0; i < 4; i++) {
        rx = rx_from(&g, &a[i], now);
        TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), i);
        TT_CHECK(c->p2p->cands[i].learned && !c->p2p->cands[i].path.handed);
        TT_CHECK(!c->p2p->cands[i].path.validated);
    }
    rx = rx_from(&g, &a[4], now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), -2);
    TT_CHECK_EQ_INT(rx.cand, -2);
    TT_CHECK_EQ_U64(g.ep->st.paths_refused, 1);
    /* a known one costs nothing */
    rx = rx_from(&g, &a[2], now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), 2);
    /* 500 ms later: one more */
    now += 499 * MS;
    rx = rx_from(&g, &a[4], now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), -2);
    now += 1 * MS;
    rx = rx_from(&g, &a[4], now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), 4);
    rx = rx_from(&g, &a[5], now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), -2);
    TT_CHECK_EQ_U64(g.ep->st.paths_refused, 3);
    /* a long quiet spell refills only up to the burst */
    now += 100 * S;
    for (int i = 5; i < 9; i++) {
        rx = rx_from(&g, &a[i], now);
        TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), i);
    }
    rx = rx_from(&g, &a[9], now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), -2);
    TT_CHECK_EQ_U64(c->p2p->n, 9);
    core_rig_free(&g);
}

static void test_table_limit(void)
{
    core_rig g;
    tern_settings s;
    tern_settings_default(&s);
    s.new_paths_per_s = 1000;
    core_rig_init(&g, &s);
    tern_conn *c = g.c;
    uint64_t now = 1 * S;
    tern_addr a;
    for (uint32_t i = 0; i < TERN__MAX_PATHS; i++) {
        addr_n(&a, 100 + i);
        tern__rx rx = rx_from(&g, &a, now);
        TT_REQUIRE(tern__p2p_rx_path(c, &rx) == (int)i);
    }
    /* full of learned, unvalidated sources: a new one takes the place of one of them (junk
     * sources cannot lock a genuine move out) */
    addr_n(&a, 200);
    tern__rx rx = rx_from(&g, &a, now);
    int i = tern__p2p_rx_path(c, &rx);
    TT_REQUIRE(i >= 0 && i < TERN__MAX_PATHS);
    TT_CHECK(tern_addr_equal(&c->p2p->cands[i].path.remote, &a));
    TT_CHECK_EQ_U64(c->p2p->n, TERN__MAX_PATHS);
    /* full of validated ones: refused */
    for (size_t k = 0; k < c->p2p->n; k++) c->p2p->cands[k].state = TERN__CAND_VALID;
    addr_n(&a, 201);
    rx = rx_from(&g, &a, now);
    TT_CHECK_EQ_INT(tern__p2p_rx_path(c, &rx), -2);
    core_rig_free(&g);
}

static void test_challenge_answers_rate_limited(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    uint64_t now = 1 * S;
    /* on the active path: answered there, no limit */
    tern__rx rx = rx_from(&g, &g.remote, now);
    tern__p2p_rx_path(c, &rx);
    tern__p2p_on_challenge(c, &rx, 0xabcdef);
    TT_CHECK_EQ_INT(c->tx.path_response_due, 1);
    TT_CHECK_EQ_U64(c->tx.path_response, 0xabcdef);
    /* on a candidate: TERN__RESP_BURST answers, then one per TERN__RESP_GAP */
    tern_addr a;
    addr_n(&a, 7);
    int answered = 0;
    for (int k = 0; k < 20; k++) {
        rx = rx_from(&g, &a, now);
        int i = tern__p2p_rx_path(c, &rx);
        TT_REQUIRE(i >= 0);
        c->p2p->cands[i].response_due = 0;
        tern__p2p_on_challenge(c, &rx, 100 + (uint64_t)k);
        if (c->p2p->cands[i].response_due) {
            answered++;
            TT_CHECK_EQ_U64(c->p2p->cands[i].response, 100 + (uint64_t)k);
        }
    }
    TT_CHECK_EQ_INT(answered, TERN__RESP_BURST);
    TT_CHECK_EQ_U64(g.ep->st.responses_limited, 20 - TERN__RESP_BURST);
    now += TERN__RESP_GAP;
    rx = rx_from(&g, &a, now);
    int i = tern__p2p_rx_path(c, &rx);
    tern__p2p_on_challenge(c, &rx, 999);
    TT_CHECK_EQ_INT(c->p2p->cands[i].response_due, 1);
    TT_CHECK_EQ_U64(c->p2p->cands[i].response, 999);
    c->p2p->cands[i].response_due = 0;
    tern__p2p_on_challenge(c, &rx, 1000);
    TT_CHECK_EQ_INT(c->p2p->cands[i].response_due, 0);
    core_rig_free(&g);
}

static void test_response_validates_and_client_leaves_relay(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    uint64_t now = 1 * S;
    /* the client is relayed; a direct candidate is being probed */
    const uint8_t ch[TERN_RELAY_CHANNEL_LEN] = {9, 9, 9, 9, 9, 9, 9, 9};
    tern__path_set(&c->path, &g.local, &g.remote, 1, ch);
    c->path.validated = 1;
    TT_REQUIRE(tern__p2p_get(c) != NULL);
    tern_addr direct;
    addr_n(&direct, 42);
    tern__cand *k = tern__cand_add(c, now, &g.local, &direct, 0, NULL, 0);
    TT_REQUIRE(k != NULL);
    TT_CHECK(k->path.handed); /* told, not learned */
    k->challenged = 1;
    uint64_t data = k->challenge;
    uint64_t moves = c->path_moves;
    tern__rx rx = rx_from(&g, &direct, now);
    tern__p2p_rx_path(c, &rx);
    /* a response with other data: nothing */
    tern__p2p_on_response(c, &rx, data ^ 1);
    TT_CHECK_EQ_INT(c->p2p->cands[0].state, TERN__CAND_PROBING);
    TT_CHECK(c->path.relayed);
    /* the echo of our challenge: valid, and the connection moves to the direct path; the relay
     * route stays as a candidate */
    tern__p2p_on_response(c, &rx, data);
    TT_CHECK(!c->path.relayed);
    TT_CHECK(tern_addr_equal(&c->path.remote, &direct));
    TT_CHECK(c->path.validated);
    TT_CHECK_EQ_U64(c->path_moves, moves + 1);
    TT_CHECK(c->p2p->cands[0].path.relayed);
    TT_CHECK(tern__path_is(&c->p2p->cands[0].path, &g.remote, 1, ch));
    core_rig_free(&g);
}

static const tt_case cases[] = {
    TT_CASE(test_three_times_rule),
    TT_CASE(test_handed_candidates_get_probe_tries),
    TT_CASE(test_relay_route_is_not_limited),
    TT_CASE(test_new_sources_rate_limited),
    TT_CASE(test_table_limit),
    TT_CASE(test_challenge_answers_rate_limited),
    TT_CASE(test_response_validates_and_client_leaves_relay),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
