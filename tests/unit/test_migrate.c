/*
 * tern_conn_migrate's edge cases and the pieces of a migration, white-box (src/core/migrate.c):
 * refused calls (server side, before the handshake ends, after close, a relayed path, bad
 * arguments), a move to the address already used, the padded PATH_CHALLENGE on the new path and
 * its bounded retries at doubling gaps, the PATH_RESPONSE that validates it, the candidates of a
 * peer connection moving along, what tern_path_info says about a silent path, and the server's
 * congestion restart when the peer's IP address changes but not on a NAT rebinding (port only),
 * nor on moves to or from a relay or a stream.
 * The migrations mid-transfer are in test_mobility (label sim).
 */
#include <string.h>

#include "core/path_int.h"
#include "support/core_rig.h"
#include "support/tnet.h"

#define MS (1000000ull)
#define S (1000000000ull)

static void test_refused_calls(void)
{
    sim *s = sim_new(tt_seed());
    TT_REQUIRE(s != NULL);
    tern_addr sa, ca, ca2;
    tern_addr_ipv4(&sa, 192, 0, 2, 1, 4433);
    tern_addr_ipv4(&ca, 198, 51, 100, 7, 50000);
    tern_addr_ipv4(&ca2, 203, 0, 113, 9, 41000);
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &sa, 1, NULL, 1);
    tnet_node_init(&cli, s, &ca, 0, NULL, 2);
    tnet_link(s, &sa, &ca, 10, 0, 0);
    tern_conn *c = tnet_connect(s, &cli, &srv, NULL);
    /* before the handshake ends */
    TT_CHECK_EQ_INT(tern_conn_migrate(c, sim_now(s), &ca2), TERN_ERR_STATE);
    tnet_run_ms(s, 200);
    TT_REQUIRE(cli.established && srv.conn != NULL);
    /* the server side never moves itself */
    TT_CHECK_EQ_INT(tern_conn_migrate(srv.conn, sim_now(s), &sa), TERN_ERR_STATE);
    /* bad arguments */
    tern_addr none, tcp = ca2;
    memset(&none, 0, sizeof(none));
    tcp.transport = TERN_TRANSPORT_TCP;
    TT_CHECK_EQ_INT(tern_conn_migrate(NULL, sim_now(s), &ca2), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_conn_migrate(c, sim_now(s), NULL), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_conn_migrate(c, sim_now(s), &none), TERN_ERR_INVALID_ARG);
    TT_CHECK_EQ_INT(tern_conn_migrate(c, sim_now(s), &tcp), TERN_ERR_INVALID_ARG);
    /* none of that moved anything */
    tern_conn_stats st;
    tern_conn_get_stats(c, &st);
    TT_CHECK_EQ_U64(st.migrations, 0);
    uint64_t paths = cli.path_changes;
    /* the same address: nothing to do, no event */
    TT_CHECK_EQ_INT(tern_conn_migrate(c, sim_now(s), &ca), TERN_OK);
    tern_conn_get_stats(c, &st);
    TT_CHECK_EQ_U64(st.migrations, 0);
    TT_CHECK_EQ_U64(cli.path_changes, paths);
    tern_path_info pi;
    tern_conn_path(c, &pi);
    TT_CHECK(pi.validated && pi.moves == 0);
    /* closed */
    TT_CHECK_EQ_INT(tern_conn_close(c, sim_now(s), 0, NULL, 0), TERN_OK);
    TT_CHECK_EQ_INT(tern_conn_migrate(c, sim_now(s), &ca2), TERN_ERR_STATE);
    tnet_run_ms(s, 500);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_relayed_path_cannot_move(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    const uint8_t ch[TERN_RELAY_CHANNEL_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    tern__path_set(&g.c->path, &g.local, &g.remote, 1, ch);
    g.c->path.validated = 1;
    tern_addr to;
    tern_addr_ipv4(&to, 203, 0, 113, 9, 41000);
    TT_CHECK_EQ_INT(tern_conn_migrate(g.c, g.now, &to), TERN_ERR_STATE);
    TT_CHECK(tern_addr_equal(&g.c->path.local, &g.local));
    core_rig_free(&g);
}

/* Writes the connection's next datagram; its length (0: nothing). */
static int next_dgram(core_rig *g, uint64_t now, uint8_t *buf, size_t cap)
{
    const tern__path *via = NULL;
    return tern__conn_write(g->c, now, buf, cap, &via);
}

static void test_challenge_padded_retried_and_validated(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    uint64_t now = 1 * S;
    tern_addr to;
    tern_addr_ipv4(&to, 203, 0, 113, 9, 41000);
    TT_REQUIRE(tern_conn_migrate(c, now, &to) == TERN_OK);
    TT_CHECK(tern_addr_equal(&c->path.local, &to));
    TT_CHECK_EQ_U64(c->path_moves, 1);
    TT_CHECK_EQ_U64(c->st.migrations, 1);
    TT_CHECK(c->live.ping_pending); /* a non-probing packet follows the challenge */
    uint8_t buf[TERN_MAX_DATAGRAM];
    /* first the challenge, padded to the datagram size */
    TT_CHECK_EQ_INT(next_dgram(&g, now, buf, sizeof(buf)), (int)c->pmtu.size);
    TT_CHECK_EQ_U64(c->mig.tries, 1);
    TT_CHECK(!c->mig.challenge_due);
    /* then the PING (small), and nothing more */
    int n = next_dgram(&g, now, buf, sizeof(buf));
    TT_CHECK(n > 0 && n < (int)c->pmtu.size);
    TT_CHECK(!c->live.ping_pending);
    /* unanswered: again at doubling gaps from one PTO, at most max_backoff, TERN__MIG_TRIES in
     * all, then the path is left as it is */
    uint64_t gap = tern__rec_rtt_pto(c), last = now;
    while (c->mig.validating) {
        uint64_t t = tern__mig_deadline(c);
        TT_REQUIRE(t != TERN_TIME_NEVER);
        TT_CHECK_EQ_U64(t - last, gap);
        gap = gap * 2 > c->ep->s.max_backoff_ns ? c->ep->s.max_backoff_ns : gap * 2;
        tern__mig_on_timer(c, t);
        if (!c->mig.validating) break;
        TT_REQUIRE(c->mig.challenge_due);
        TT_CHECK_EQ_INT(tern__mig_write(c, t, buf, sizeof(buf)), (int)c->pmtu.size);
        last = t;
        TT_REQUIRE(c->mig.tries <= TERN__MIG_TRIES);
    }
    TT_CHECK_EQ_U64(c->mig.tries, TERN__MIG_TRIES);
    TT_CHECK_EQ_U64(tern__mig_deadline(c), TERN_TIME_NEVER);
    TT_CHECK_EQ_U64(c->st.migrations_validated, 0);

    /* a second move; the echo of an old challenge or of other data does not validate it, the
     * echo of this one does */
    uint64_t old = c->mig.challenge;
    tern_addr to2;
    tern_addr_ipv4(&to2, 203, 0, 113, 10, 41001);
    now = 100 * S;
    TT_REQUIRE(tern_conn_migrate(c, now, &to2) == TERN_OK);
    TT_CHECK(c->mig.challenge != old);
    TT_CHECK_EQ_INT(tern__mig_on_response(c, c->mig.challenge), 0); /* not sent yet */
    TT_CHECK(next_dgram(&g, now, buf, sizeof(buf)) > 0);
    TT_CHECK_EQ_INT(tern__mig_on_response(c, old), 0);
    TT_CHECK_EQ_INT(tern__mig_on_response(c, c->mig.challenge ^ 1), 0);
    tern_path_info pi;
    tern_conn_path(c, &pi);
    TT_CHECK(!pi.validated);
    TT_CHECK_EQ_INT(tern__mig_on_response(c, c->mig.challenge), 1);
    tern_conn_path(c, &pi);
    TT_CHECK(pi.validated);
    TT_CHECK(tern_addr_equal(&pi.local, &to2));
    TT_CHECK_EQ_U64(pi.moves, 2);
    TT_CHECK_EQ_U64(c->st.migrations, 2);
    TT_CHECK_EQ_U64(c->st.migrations_validated, 1);
    TT_CHECK_EQ_U64(tern__mig_deadline(c), TERN_TIME_NEVER);
    core_rig_free(&g);
}

static void test_candidates_move_along(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    TT_REQUIRE(tern__p2p_get(c) != NULL);
    tern_addr direct, relay, to;
    tern_addr_ipv4(&direct, 203, 0, 113, 50, 40000);
    tern_addr_ipv4(&relay, 192, 0, 2, 99, 4433);
    tern_addr_ipv4(&to, 203, 0, 113, 9, 41000);
    const uint8_t ch[TERN_RELAY_CHANNEL_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    TT_REQUIRE(tern__cand_add(c, g.now, &g.local, &direct, 0, NULL, 0) != NULL);
    TT_REQUIRE(tern__cand_add(c, g.now, &g.local, &relay, 1, ch, 0) != NULL);
    TT_REQUIRE(tern_conn_migrate(c, g.now, &to) == TERN_OK);
    TT_CHECK(tern_addr_equal(&c->p2p->cands[0].path.local, &to));
    /* the relay knows us by the address the rendezvous server registered: left as it was */
    TT_CHECK(tern_addr_equal(&c->p2p->cands[1].path.local, &g.local));
    core_rig_free(&g);
}

static void test_path_info_tells_silence(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    tern_path_info pi;
    tern_conn_path(c, &pi);
    TT_CHECK_EQ_U64(pi.unanswered_since, 0);
    TT_CHECK(pi.silent_after_ns >= 1 * S); /* 3 PTO, at least 1 s */
    TT_CHECK(tern_addr_equal(&pi.local, &g.local));
    c->path.await_since = 7 * S;
    tern_conn_path(c, &pi);
    TT_CHECK_EQ_U64(pi.unanswered_since, 7 * S);
    core_rig_free(&g);
}

static void test_server_restarts_cc_on_a_new_peer_ip_only(void)
{
    core_rig g;
    core_rig_init(&g, NULL);
    tern_conn *c = g.c;
    tern__rec_rtt_sample(c, 40 * MS);
    TT_REQUIRE(c->rec.rtt.has_sample);
    /* a NAT rebinding: the same IP address, another port: the path's estimates stay */
    tern__path old = c->path;
    c->path.remote.port++;
    tern__mig_peer_moved(c, &old, 2 * S);
    TT_CHECK(c->rec.rtt.has_sample);
    TT_CHECK_EQ_U64(c->st.migrations, 1);
    /* another IP address: a new path, estimated afresh (RFC 9000 9.4) */
    old = c->path;
    c->path.remote.ip[3]++;
    tern__mig_peer_moved(c, &old, 3 * S);
    TT_CHECK(!c->rec.rtt.has_sample);
    TT_CHECK_EQ_U64(c->st.migrations, 2);
    /* from or to a relay: not a migration of the peer */
    old = c->path;
    old.relayed = 1;
    tern__mig_peer_moved(c, &old, 4 * S);
    TT_CHECK_EQ_U64(c->st.migrations, 2);
    /* from a stream path (TCP) to UDP: the stream rules apply, not a migration */
    old = c->path;
    old.relayed = 0;
    old.remote.transport = TERN_TRANSPORT_TCP;
    tern__mig_peer_moved(c, &old, 5 * S);
    TT_CHECK_EQ_U64(c->st.migrations, 2);
    core_rig_free(&g);
}

static const tt_case cases[] = {
    TT_CASE(test_refused_calls),
    TT_CASE(test_relayed_path_cannot_move),
    TT_CASE(test_challenge_padded_retried_and_validated),
    TT_CASE(test_candidates_move_along),
    TT_CASE(test_path_info_tells_silence),
    TT_CASE(test_server_restarts_cc_on_a_new_peer_ip_only),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
