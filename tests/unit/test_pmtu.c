/*
 * White-box tests of src/core/pmtu.c, path MTU discovery, on the bare connection of
 * support/core_rig: when probing starts (one smoothed RTT after establishment, never with
 * no_pmtud), the ladder tried largest first (1472, 1452, 1400, 1350) with three probes of each
 * size, a probe's ACK raising the datagram size and the search starting again 600 s later, a
 * lost probe stepping down without being a congestion signal, the bounds (the peer's
 * max_udp_payload, never below the size already known), and no probing through a relay.
 * Then the size following the path down: black-hole detection (a run of large losses or a
 * probe timeout makes the size suspect, a probe of the size decides; losses broken by an ACK
 * of a large packet do not count; a silent path is not a black hole) and the fresh search on a
 * path change.
 */
#include <string.h>

#include "core/conn_int.h"
#include "core/path_int.h"
#include "support/core_rig.h"

#define MS (1000000ull)
#define S (1000000000ull)
#define RAISE (600 * S) /* pmtu.c's PMTU_RAISE */

static const size_t LADDER[] = {1472, 1452, 1400, 1350};

typedef struct rig {
    core_rig k;
    tern_conn *c;
    uint64_t now;
    uint8_t buf[TERN_MAX_DATAGRAM];
} rig;

/* The bare connection with a 100 ms RTT (variation 10 ms) and the peer's 25 ms ACK delay. */
static void rig_init(rig *g, const tern_settings *s)
{
    core_rig_init(&g->k, s);
    g->c = g->k.c;
    g->now = 1 * S;
    g->c->rec.rtt.srtt = 100 * MS;
    g->c->rec.rtt.rttvar = 10 * MS;
    g->c->rec.rtt.has_sample = 1;
    g->c->peer.max_ack_delay = 25 * MS;
}

static void rig_free(rig *g)
{
    core_rig_free(&g->k);
}

/* How long a probe waits for its ACK: 3 PTOs (without backoff) plus the peer's ACK delay. */
static uint64_t probe_timeout(const rig *g)
{
    return 3 * tern__rec_rtt_pto(g->c) + g->c->peer.max_ack_delay;
}

/* Runs the timer now and writes what is due; returns the datagram's size (0: none). */
static int step(rig *g)
{
    tern__pmtu_on_timer(g->c, g->now);
    int n = tern__pmtu_write(g->c, g->now, g->buf, sizeof(g->buf));
    TT_CHECK(n >= 0);
    return n;
}

static int ack(rig *g, uint64_t pn)
{
    tern__ack_frame f;
    memset(&f, 0, sizeof(f));
    f.largest = pn;
    f.r[0].lo = f.r[0].hi = pn;
    f.n = 1;
    tern__pmtu_on_ack(g->c, g->now, &f);
    return (int)g->c->pmtu.size;
}

static void test_start_one_rtt_after_establishment(void)
{
    rig g;
    rig_init(&g, NULL);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200); /* tern_settings.max_udp_payload */
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), TERN_TIME_NEVER);
    TT_CHECK_EQ_INT(step(&g), 0); /* nothing before start */
    tern__pmtu_start(g.c, g.now);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + 100 * MS);
    g.now += 100 * MS - 1;
    TT_CHECK_EQ_INT(step(&g), 0);
    TT_CHECK_EQ_INT(g.c->pmtu.due, 0);
    g.now += 1;
    tern__pmtu_on_timer(g.c, g.now);
    TT_CHECK_EQ_INT(g.c->pmtu.due, 1);
    /* due: it waits for the send loop, not for a timer */
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), TERN_TIME_NEVER);
    rig_free(&g);

    tern_settings s;
    tern_settings_default(&s);
    s.no_pmtud = 1;
    rig_init(&g, &s);
    tern__pmtu_start(g.c, g.now);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), TERN_TIME_NEVER);
    g.now += 10 * S;
    TT_CHECK_EQ_INT(step(&g), 0);
    rig_free(&g);
}

static void test_probe_is_padded_ping_of_top_size(void)
{
    rig g;
    rig_init(&g, NULL);
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    uint64_t pn = g.c->tx.next_pn;
    tern__recovery *r = g.c->rec.r;
    TT_CHECK_EQ_INT(step(&g), 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.in_flight, 1);
    TT_CHECK_EQ_U64(g.c->pmtu.probe_pn, pn);
    TT_CHECK_EQ_U64(g.c->tx.next_pn, pn + 1);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + probe_timeout(&g));
    /* not recorded for loss recovery: nothing in flight, nothing sent there */
    TT_CHECK_EQ_U64(r->bytes_in_flight, 0);
    TT_CHECK_EQ_U64(r->sent_total, 0);
    /* one probe at a time */
    TT_CHECK_EQ_INT(step(&g), 0);
    /* the packet is ours: it opens with our keys (decrypts to a PING and padding) */
    tern__aead rx;
    static const uint8_t tx_secret[32] = {1};
    TT_REQUIRE(tern__aead_init(&rx, TERN__WIRE_CHACHA20POLY1305, tx_secret) == TERN_OK);
    uint8_t plain[TERN_MAX_DATAGRAM];
    size_t hl = SHORT_HDR_LEN, flen = 1472 - hl - TERN__AEAD_TAG_LEN;
    TT_CHECK_EQ_INT(tern__aead_open(&rx, pn, 0, g.buf, hl, g.buf + hl, 1472 - hl, plain),
                    TERN_OK);
    TT_CHECK_EQ_INT(plain[0], TERN__FRAME_PING);
    size_t pad = 0;
    for (size_t i = 2; i < flen; i++) pad += plain[i] == 0;
    TT_CHECK_EQ_U64(pad, flen - 2); /* PING, id 0, then PADDING to the size */
    tern__aead_wipe(&rx);
    rig_free(&g);
}

static void test_ack_raises_and_search_restarts_later(void)
{
    rig g;
    rig_init(&g, NULL);
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    size_t before = tern__conn_max_payload(g.c);
    TT_REQUIRE(step(&g) == 1472);
    uint64_t pn = g.c->pmtu.probe_pn;
    /* an ACK of something else changes nothing */
    g.now += 50 * MS;
    TT_CHECK_EQ_INT(ack(&g, pn + 7), 1200);
    TT_CHECK_EQ_INT(g.c->pmtu.in_flight, 1);
    /* the probe's: the size is raised, datagrams grow by as much */
    g.now += 50 * MS;
    TT_CHECK_EQ_INT(ack(&g, pn), 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.in_flight, 0);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), before + (1472 - 1200));
    /* nothing above 1472 to try: the next search is RAISE away */
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + RAISE);
    uint64_t t = g.now;
    g.now = t + RAISE - 1;
    TT_CHECK_EQ_INT(step(&g), 0);
    g.now = t + RAISE;
    TT_CHECK_EQ_INT(step(&g), 0); /* due, but the top of the ladder is known already */
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1472);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + RAISE);
    rig_free(&g);
}

static void test_losses_step_down_the_ladder(void)
{
    rig g;
    rig_init(&g, NULL);
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    uint64_t first_pn = g.c->tx.next_pn;
    /* every probe is lost: three of each size, largest first */
    for (size_t i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) {
            int n = step(&g);
            TT_REQUIRE_MSG((size_t)n == LADDER[i], "probe %zu.%d: %d bytes, want %zu", i, k, n,
                           LADDER[i]);
            uint64_t deadline = tern__pmtu_deadline(g.c);
            TT_CHECK_EQ_U64(deadline, g.now + probe_timeout(&g));
            g.now = deadline - 1;
            TT_CHECK_EQ_INT(step(&g), 0); /* not lost yet */
            g.now = deadline;
        }
    /* the ladder is spent: no probe, the size stays, the next search is RAISE away */
    TT_CHECK_EQ_INT(step(&g), 0);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200);
    TT_CHECK_EQ_INT(g.c->pmtu.due, 0);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + RAISE);
    /* lost probes are not congestion: loss recovery saw none of them */
    TT_CHECK_EQ_U64(g.c->rec.r->lost_total, 0);
    TT_CHECK_EQ_U64(g.c->st.packets_lost, 0);
    /* a very late ACK of a probe given up on changes nothing */
    TT_CHECK_EQ_INT(ack(&g, first_pn), 1200);
    /* RAISE later it starts again from the top */
    g.now += RAISE;
    TT_CHECK_EQ_INT(step(&g), 1472);
    rig_free(&g);
}

static void test_second_size_passes_and_bounds(void)
{
    rig g;
    rig_init(&g, NULL);
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    /* 1472 is lost three times, 1452 passes */
    for (int k = 0; k < 3; k++) {
        TT_REQUIRE(step(&g) == 1472);
        g.now = tern__pmtu_deadline(g.c);
    }
    TT_REQUIRE(step(&g) == 1452);
    g.now += 100 * MS;
    TT_CHECK_EQ_INT(ack(&g, g.c->pmtu.probe_pn), 1452);
    /* RAISE later: 1472 again; lost three times, and nothing below 1452 is tried */
    g.now += RAISE;
    for (int k = 0; k < 3; k++) {
        TT_REQUIRE(step(&g) == 1472);
        g.now = tern__pmtu_deadline(g.c);
    }
    TT_CHECK_EQ_INT(step(&g), 0);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1452);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + RAISE);
    rig_free(&g);

    /* the peer takes at most 1400: the larger sizes are skipped */
    rig_init(&g, NULL);
    g.c->peer.max_udp_payload = 1400;
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    TT_REQUIRE(step(&g) == 1400);
    TT_CHECK_EQ_INT(ack(&g, g.c->pmtu.probe_pn), 1400);
    g.now += RAISE;
    TT_CHECK_EQ_INT(step(&g), 0); /* nothing above 1400 the peer takes */
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1400);
    rig_free(&g);

    /* the peer takes no more than we send already: nothing to probe */
    rig_init(&g, NULL);
    g.c->peer.max_udp_payload = 1300;
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    size_t mp = tern__conn_max_payload(g.c);
    TT_CHECK_EQ_INT(step(&g), 0);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), mp);
    rig_free(&g);
}

static void test_no_probe_through_relay_or_when_not_established(void)
{
    rig g;
    rig_init(&g, NULL);
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    g.c->path.relayed = 1;
    TT_CHECK_EQ_INT(step(&g), 0);
    TT_CHECK_EQ_INT(g.c->pmtu.due, 0);
    TT_CHECK_EQ_INT(g.c->pmtu.in_flight, 0);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200);
    rig_free(&g);

    rig_init(&g, NULL);
    tern__pmtu_start(g.c, g.now);
    g.now += 100 * MS;
    tern__pmtu_on_timer(g.c, g.now);
    /* a buffer too small for the probe: it stays due for the next call */
    TT_CHECK_EQ_INT(tern__pmtu_write(g.c, g.now, g.buf, 1400), 0);
    TT_CHECK_EQ_INT(g.c->pmtu.due, 1);
    /* closing: nothing goes */
    g.c->state = TERN_CONN_CLOSING;
    TT_CHECK_EQ_INT(tern__pmtu_write(g.c, g.now, g.buf, sizeof(g.buf)), 0);
    TT_CHECK_EQ_INT(g.c->pmtu.in_flight, 0);
    rig_free(&g);
}


/* A rig whose discovery settled at 1472 (the top of the ladder). */
static void rig_at_1472(rig *g)
{
    rig_init(g, NULL);
    tern__pmtu_start(g->c, g->now);
    g->now += 100 * MS;
    TT_REQUIRE(step(g) == 1472);
    g->now += 100 * MS;
    TT_REQUIRE(ack(g, g->c->pmtu.probe_pn) == 1472);
    TT_REQUIRE(tern__conn_max_payload(g->c) == 1472);
}

static void test_run_of_large_losses_makes_the_size_suspect(void)
{
    rig g;
    rig_at_1472(&g);
    tern_conn_stats st;
    /* (the packets' send times: t + 1, t + 2, ... in the order they went) */
    uint64_t t = g.now;
    /* two lost, then a large packet acknowledged: the run starts again */
    tern__pmtu_on_lost(g.c, g.now, t + 1, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 2, 1472);
    tern__pmtu_on_acked(g.c, t + 3, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 4, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 5, 1472);
    /* small packets lost or acknowledged say nothing about the size */
    tern__pmtu_on_lost(g.c, g.now, t + 6, 1200);
    tern__pmtu_on_acked(g.c, t + 7, 900);
    TT_CHECK_EQ_U64(g.c->pmtu.lost_run, 2);
    /* nor do large ones sent before a large one that was acknowledged (a queue overflowing) */
    tern__pmtu_on_acked(g.c, t + 9, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 4, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 5, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 8, 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 0);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 10, 1472);
    tern__pmtu_on_lost(g.c, g.now, t + 11, 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 0);
    /* the third in a row: packets at the base size until a probe of 1472 decides */
    tern__pmtu_on_lost(g.c, g.now, t + 12, 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 1);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), 1200);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1472);
    TT_CHECK_EQ_INT(step(&g), 1472); /* the size itself, not the next of the ladder */
    TT_CHECK_EQ_INT(g.c->pmtu.confirming, 1);
    /* its ACK: the losses were congestion; the size is used again, the search schedule kept */
    g.now += 100 * MS;
    TT_CHECK_EQ_INT(ack(&g, g.c->pmtu.probe_pn), 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 0);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), 1472);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now - 100 * MS + RAISE);
    tern_conn_get_stats(g.c, &st);
    TT_CHECK_EQ_U64(st.pmtu_suspicions, 1);
    TT_CHECK_EQ_U64(st.pmtu_black_holes, 0);
    TT_CHECK_EQ_U64(st.pmtu_size, 1472);
    rig_free(&g);
}

static void test_black_hole_drops_to_base_and_searches_again(void)
{
    rig g;
    rig_at_1472(&g);
    /* a probe timeout with a 1472-byte packet outstanding: suspect at once */
    tern__pmtu_on_pto(g.c, g.now, 1200);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 0);
    tern__pmtu_on_pto(g.c, g.now, 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 1);
    TT_CHECK_EQ_INT(step(&g), 1472);
    /* smaller packets get through meanwhile */
    tern__pmtu_on_acked(g.c, g.now, 1200);
    /* the first probe lost: one more (bad luck is possible) */
    g.now = tern__pmtu_deadline(g.c);
    TT_CHECK_EQ_INT(step(&g), 1472);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1472);
    /* the second lost too: a black hole */
    g.now = tern__pmtu_deadline(g.c);
    tern__pmtu_on_timer(g.c, g.now);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 0);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), 1200);
    tern_conn_stats st;
    tern_conn_get_stats(g.c, &st);
    TT_CHECK_EQ_U64(st.pmtu_black_holes, 1);
    TT_CHECK_EQ_U64(st.pmtu_size, 1200);
    /* a fresh search from the top of the ladder, now */
    TT_CHECK_EQ_INT(step(&g), 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.confirming, 0);
    /* the path carries 1400 now: the search finds it */
    for (int i = 0; i < 6; i++) {
        g.now = tern__pmtu_deadline(g.c);
        TT_REQUIRE(step(&g) > 0);
    }
    TT_CHECK_EQ_U64(g.c->pmtu.probe_size, 1400);
    g.now += 50 * MS;
    TT_CHECK_EQ_INT(ack(&g, g.c->pmtu.probe_pn), 1400);
    rig_free(&g);
}

static void test_silent_path_is_not_a_black_hole(void)
{
    rig g;
    rig_at_1472(&g);
    tern__pmtu_on_pto(g.c, g.now, 1472);
    TT_REQUIRE(step(&g) == 1472);
    /* nothing at all comes back: an outage, not an MTU; the probes go on, the size stays */
    for (int i = 0; i < 6; i++) {
        g.now = tern__pmtu_deadline(g.c);
        TT_CHECK_EQ_INT(step(&g), 1472);
    }
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1472);
    TT_CHECK_EQ_INT(g.c->pmtu.suspect, 1);
    TT_CHECK_EQ_U64(g.c->st.pmtu_black_holes, 0);
    /* the path answers again, the size with it */
    g.now += 100 * MS;
    TT_CHECK_EQ_INT(ack(&g, g.c->pmtu.probe_pn), 1472);
    TT_CHECK_EQ_U64(tern__conn_max_payload(g.c), 1472);
    rig_free(&g);
}

static void test_path_change_starts_a_fresh_search(void)
{
    rig g;
    rig_at_1472(&g);
    tern__pmtu_on_lost(g.c, g.now, g.now, 1472);
    tern__pmtu_path_changed(g.c, g.now);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200);
    TT_CHECK_EQ_U64(g.c->pmtu.lost_run, 0);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + 100 * MS); /* one smoothed RTT */
    g.now += 100 * MS;
    TT_CHECK_EQ_INT(step(&g), 1472);
    /* a probe in flight when the path changes is forgotten: its ACK raises nothing */
    uint64_t pn = g.c->pmtu.probe_pn;
    tern__pmtu_path_changed(g.c, g.now);
    TT_CHECK_EQ_INT(ack(&g, pn), 1200);
    /* the active path moving (path.c) does the same */
    g.now += 100 * MS;
    TT_REQUIRE(step(&g) == 1472);
    TT_REQUIRE(ack(&g, g.c->pmtu.probe_pn) == 1472);
    TT_REQUIRE(tern__p2p_get(g.c) != NULL);
    tern_addr other;
    tern_addr_ipv4(&other, 203, 0, 113, 9, 4433);
    TT_REQUIRE(tern__cand_add(g.c, g.now, &g.k.local, &other, 0, NULL, 0) != NULL);
    g.c->p2p->cands[0].path.validated = 1;
    tern__p2p_fall_back(g.c, g.now, 0);
    TT_CHECK_EQ_U64(g.c->pmtu.size, 1200);
    TT_CHECK_EQ_U64(tern__pmtu_deadline(g.c), g.now + g.c->rec.rtt.srtt);
    rig_free(&g);
}

static const tt_case cases[] = {
    TT_CASE(test_start_one_rtt_after_establishment),
    TT_CASE(test_probe_is_padded_ping_of_top_size),
    TT_CASE(test_ack_raises_and_search_restarts_later),
    TT_CASE(test_losses_step_down_the_ladder),
    TT_CASE(test_second_size_passes_and_bounds),
    TT_CASE(test_no_probe_through_relay_or_when_not_established),
    TT_CASE(test_run_of_large_losses_makes_the_size_suspect),
    TT_CASE(test_black_hole_drops_to_base_and_searches_again),
    TT_CASE(test_silent_path_is_not_a_black_hole),
    TT_CASE(test_path_change_starts_a_fresh_search),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
