/*
 * test_sim: the simulated network and the tt framework measured with toy nodes.
 *
 * Design: one toy node type does everything the checks need. It can send a paced stream
 * (sequence number and send time in the first 16 bytes, zeros after), echo what it receives back
 * to the sender, and log each arrival (sequence, send time, arrival time, bit count). Each case
 * builds a small network, runs it, and compares what the toys measured with what the link was
 * configured to do: exact numbers where the model is deterministic (delay, blackholes), binomial
 * 99.9% intervals where it is random. Every case takes its seed from tt_seed(), so a failure is
 * replayed with TERN_SEED=N.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"
#include "support/tt.h"

#define MS TERN_NS_PER_MS
#define SEC TERN_NS_PER_S
#define US 1000ull

/* ---------------------------------------------------------------- the toy node */

typedef struct rec {
    uint64_t seq, sent, recv;
    unsigned bits; /* set bits in bytes 16.. (raw mode: in the whole datagram) */
} rec;

typedef struct qpkt {
    tern_addr from, to;
    size_t len;
    uint8_t data[TERN_MAX_DATAGRAM];
} qpkt;

typedef struct toy {
    tern_addr addr, dst;
    /* sending */
    uint64_t interval_ns, count, sent, next_at;
    size_t size;
    int raw;  /* all-zero payload, no header */
    int pending;
    /* echoing */
    int echo;
    qpkt *q;
    size_t qhead, qn, qcap;
    /* receiving */
    rec *recs;
    size_t nrecs, rcap;
    uint64_t rx, rx_bytes;
    uint64_t max_seq, late, dups;
    uint8_t *seen;
    size_t seen_len;
    tern_addr last_remote;
    unsigned remote_changes;
} toy;

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static unsigned popcount_bytes(const uint8_t *p, size_t len)
{
    unsigned n = 0;
    for (size_t i = 0; i < len; i++)
        n += (unsigned)__builtin_popcount(p[i]);
    return n;
}

static void toy_recv(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                     const uint8_t *data, size_t len)
{
    toy *t = node;
    t->rx++;
    t->rx_bytes += len;
    if (t->rx > 1 && !tern_addr_equal(remote, &t->last_remote))
        t->remote_changes++;
    t->last_remote = *remote;
    if (t->echo) {
        if (t->qn == 0)
            t->qhead = 0;
        if (t->qhead + t->qn == t->qcap) {
            size_t nc = t->qcap ? t->qcap * 2 : 4;
            qpkt *nq = realloc(t->q, nc * sizeof(*nq));
            if (!nq)
                abort();
            t->q = nq;
            t->qcap = nc;
        }
        qpkt *q = &t->q[t->qhead + t->qn++];
        q->from = *local;
        q->to = *remote;
        q->len = len;
        memcpy(q->data, data, len);
        return;
    }
    rec r = {0, 0, now, 0};
    if (t->raw || len < 16) {
        r.bits = popcount_bytes(data, len);
    } else {
        r.seq = get_u64(data);
        r.sent = get_u64(data + 8);
        r.bits = popcount_bytes(data + 16, len - 16);
        if (r.seq < t->max_seq)
            t->late++;
        else
            t->max_seq = r.seq;
        if (r.seq / 8 < t->seen_len) {
            if (t->seen[r.seq / 8] & (1u << (r.seq % 8)))
                t->dups++;
            t->seen[r.seq / 8] |= (uint8_t)(1u << (r.seq % 8));
        }
    }
    if (t->nrecs == t->rcap) {
        size_t nc = t->rcap ? t->rcap * 2 : 1024;
        rec *nr = realloc(t->recs, nc * sizeof(*nr));
        if (!nr)
            abort();
        t->recs = nr;
        t->rcap = nc;
    }
    t->recs[t->nrecs++] = r;
}

static int toy_send(void *node, uint64_t now, tern_datagram *dg, size_t max, uint8_t *buf,
                    size_t buf_len)
{
    toy *t = node;
    size_t n = 0;
    (void)buf_len;
    while (n < max && t->qn) {
        qpkt *q = &t->q[t->qhead++];
        t->qn--;
        dg[n].local = q->from;
        dg[n].remote = q->to;
        dg[n].data = buf + n * TERN_MAX_DATAGRAM;
        dg[n].len = q->len;
        memcpy(dg[n].data, q->data, q->len);
        n++;
    }
    while (n < max && t->pending) {
        uint8_t *p = buf + n * TERN_MAX_DATAGRAM;
        memset(p, 0, t->size);
        if (!t->raw && t->size >= 16) {
            put_u64(p, t->sent);
            put_u64(p + 8, now);
        }
        dg[n].local = t->addr;
        dg[n].remote = t->dst;
        dg[n].data = p;
        dg[n].len = t->size;
        t->sent++;
        t->pending--;
        n++;
    }
    return (int)n;
}

static uint64_t toy_deadline(void *node)
{
    toy *t = node;
    return t->sent + (uint64_t)t->pending < t->count ? t->next_at : TERN_TIME_NEVER;
}

static void toy_expire(void *node, uint64_t now)
{
    toy *t = node;
    while (t->next_at <= now && t->sent + (uint64_t)t->pending < t->count) {
        t->pending++;
        t->next_at += t->interval_ns;
    }
}

static const sim_node_ops toy_ops = {toy_recv, toy_send, toy_deadline, toy_expire};

static void toy_init(toy *t, const tern_addr *addr)
{
    memset(t, 0, sizeof(*t));
    t->addr = *addr;
}

/* Configures t to send count datagrams of size bytes to dst, one every interval from start. */
static void toy_stream(toy *t, const tern_addr *dst, uint64_t start, uint64_t interval,
                       uint64_t count, size_t size)
{
    t->dst = *dst;
    t->next_at = start;
    t->interval_ns = interval;
    t->count = count;
    t->size = size;
    t->seen_len = (size_t)(count / 8 + 1);
    t->seen = calloc(t->seen_len, 1);
}

static void toy_free(toy *t)
{
    free(t->q);
    free(t->recs);
    free(t->seen);
}

/* Receivers need a seen-bitmap sized for the sender's count. */
static void toy_expect(toy *t, uint64_t count)
{
    t->seen_len = (size_t)(count / 8 + 1);
    free(t->seen);
    t->seen = calloc(t->seen_len, 1);
}

static tern_addr ip4(uint8_t last, uint16_t port)
{
    tern_addr a;
    memset(&a, 0, sizeof(a));
    tern_addr_ipv4(&a, 10, 0, 0, last, port);
    return a;
}

/* Half-width of a two-sided 99.9% normal interval for a binomial(n, p) count (z = 3.29),
 * rounded up. */
static double binom999(double n, double p)
{
    return ceil(3.2905 * sqrt(n * p * (1.0 - p)));
}

/* A sim with two toys a (10.0.0.1:1000) and b (10.0.0.2:2000) and a link a->b with p. */
typedef struct pair {
    sim *s;
    toy a, b;
    tern_addr aa, ba;
    sim_node *na, *nb;
    sim_link *ab, *ba_link;
} pair;

static void pair_init(pair *pr, const sim_link_params *p)
{
    memset(pr, 0, sizeof(*pr));
    pr->s = sim_new(tt_seed());
    TT_REQUIRE(pr->s != NULL);
    pr->aa = ip4(1, 1000);
    pr->ba = ip4(2, 2000);
    toy_init(&pr->a, &pr->aa);
    toy_init(&pr->b, &pr->ba);
    pr->na = sim_add_node(pr->s, &toy_ops, &pr->a, &pr->aa);
    pr->nb = sim_add_node(pr->s, &toy_ops, &pr->b, &pr->ba);
    TT_REQUIRE(pr->na && pr->nb);
    pr->ab = sim_link_set(pr->s, &pr->aa, &pr->ba, p);
    TT_REQUIRE(pr->ab != NULL);
}

static void pair_free(pair *pr)
{
    sim_del(pr->s);
    toy_free(&pr->a);
    toy_free(&pr->b);
}

/* ---------------------------------------------------------------- delay and rate */

static void test_delay_exact(void)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 37 * MS;
    pair pr;
    pair_init(&pr, &p);
    p.delay_ns = 20 * MS;
    pr.ba_link = sim_link_set(pr.s, &pr.ba, &pr.aa, &p);
    toy_stream(&pr.a, &pr.ba, 0, 10 * MS, 100, 100);
    toy_expect(&pr.b, 100);
    pr.b.echo = 1;
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 2 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(sim_now(pr.s), 2 * SEC);
    /* a logs the echoes: RTT = 37 + 20 ms exactly. */
    TT_CHECK_EQ_U64(pr.a.nrecs, 100);
    for (size_t i = 0; i < pr.a.nrecs; i++) {
        TT_CHECK_EQ_U64(pr.a.recs[i].seq, i);
        TT_CHECK_EQ_U64(pr.a.recs[i].recv - pr.a.recs[i].sent, 57 * MS);
    }
    TT_CHECK_EQ_U64(sim_link_get_stats(pr.ab)->delivered, 100);
    TT_CHECK_EQ_U64(sim_link_get_stats(pr.ba_link)->delivered, 100);
    pair_free(&pr);

    /* With a 1 Mbit/s serializer and no queueing: delay + 1000 * 8 / 1e6 s = 37 + 8 ms. */
    sim_link_params_init(&p);
    p.delay_ns = 37 * MS;
    p.rate_bps = 1000000;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 5 * MS, 100 * MS, 20, 1000);
    toy_expect(&pr.b, 20);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 3 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(pr.b.nrecs, 20);
    for (size_t i = 0; i < pr.b.nrecs; i++)
        TT_CHECK_EQ_U64(pr.b.recs[i].recv - pr.b.recs[i].sent, 45 * MS);
    pair_free(&pr);
}

static void test_jitter_keeps_fifo(void)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.jitter_ns = 5 * MS;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 1 * MS, 10000, 64);
    toy_expect(&pr.b, 10000);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 20 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(pr.b.nrecs, 10000);
    TT_CHECK_EQ_U64(pr.b.late, 0);
    uint64_t mn = UINT64_MAX, mx = 0;
    for (size_t i = 0; i < pr.b.nrecs; i++) {
        uint64_t d = pr.b.recs[i].recv - pr.b.recs[i].sent;
        mn = d < mn ? d : mn;
        mx = d > mx ? d : mx;
    }
    TT_CHECK(mn >= 10 * MS);
    TT_CHECK(mx <= 15 * MS);
    TT_CHECK_MSG(mx - mn > 4 * MS, "jitter spread only %llu ns", (unsigned long long)(mx - mn));
    pair_free(&pr);
}

static void test_rate_and_drop_tail(void)
{
    /* Offer 20 Mbit/s (1250 B every 0.5 ms) to a 10 Mbit/s link with a 30,000-byte queue. */
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 5 * MS;
    p.rate_bps = 10000000;
    p.queue_bytes = 30000;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 500 * US, 10000, 1250);
    toy_expect(&pr.b, 10000);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 10 * SEC), SIM_OK);
    const sim_link_stats *st = sim_link_get_stats(pr.ab);
    TT_REQUIRE(pr.b.nrecs > 100);
    uint64_t first = pr.b.recs[0].recv, last = pr.b.recs[pr.b.nrecs - 1].recv;
    /* Throughput between the first and last arrival, excluding the first packet's bytes. */
    double mbps = (double)(pr.b.rx_bytes - 1250) * 8.0 / ((double)(last - first) / 1e9) / 1e6;
    printf("    rate: offered 20 Mbit/s, delivered %.4f Mbit/s, %llu queue drops, max backlog "
           "%llu B\n",
           mbps, (unsigned long long)st->dropped_queue, (unsigned long long)st->max_queue_bytes);
    TT_CHECK_RANGE(mbps, 9.99, 10.01);
    TT_CHECK_RANGE(st->dropped_queue, 4900, 5100);
    TT_CHECK_EQ_U64(st->delivered + st->dropped_queue, 10000);
    TT_CHECK(st->max_queue_bytes <= 30000);
    TT_CHECK(st->max_queue_bytes >= 30000 - 1250);
    uint64_t maxd = 0;
    for (size_t i = 0; i < pr.b.nrecs; i++) {
        uint64_t d = pr.b.recs[i].recv - pr.b.recs[i].sent;
        maxd = d > maxd ? d : maxd;
    }
    /* Worst case: propagation + a full queue drained at 10 Mbit/s (30,000 B = 24 ms). */
    TT_CHECK_RANGE(maxd, 5 * MS + 23 * MS, 5 * MS + 24 * MS + 1);
    pair_free(&pr);

    /* Under-loaded (5 Mbit/s): no drops, each packet sees delay + 1 ms of serialization. */
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 2 * MS, 1000, 1250);
    toy_expect(&pr.b, 1000);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 3 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(pr.b.nrecs, 1000);
    TT_CHECK_EQ_U64(sim_link_get_stats(pr.ab)->dropped_queue, 0);
    for (size_t i = 0; i < pr.b.nrecs; i++)
        TT_CHECK_EQ_U64(pr.b.recs[i].recv - pr.b.recs[i].sent, 6 * MS);
    pair_free(&pr);
}

/* ---------------------------------------------------------------- loss */

static void test_random_loss(void)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 1 * MS;
    p.loss = 0.01;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 100 * US, 100000, 32);
    toy_expect(&pr.b, 100000);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 11 * SEC), SIM_OK);
    const sim_link_stats *st = sim_link_get_stats(pr.ab);
    double hw = binom999(100000, 0.01);
    printf("    loss 1%%: %llu of 100000 lost (99.9%% interval 1000 +- %.0f)\n",
           (unsigned long long)st->dropped_loss, hw);
    TT_CHECK_RANGE(st->dropped_loss, 1000 - hw, 1000 + hw);
    TT_CHECK_EQ_U64(pr.b.nrecs + st->dropped_loss, 100000);
    pair_free(&pr);
}

/* Lengths of runs of missing sequence numbers in b's log (in-order link). */
static void loss_runs(const toy *b, uint64_t count, uint64_t *nruns, uint64_t *lost,
                      uint64_t *maxrun)
{
    *nruns = *lost = *maxrun = 0;
    uint64_t run = 0;
    for (uint64_t s = 0; s < count; s++) {
        int got = (b->seen[s / 8] >> (s % 8)) & 1;
        if (!got) {
            run++;
            (*lost)++;
        }
        if ((got || s == count - 1) && run) {
            (*nruns)++;
            if (run > *maxrun)
                *maxrun = run;
            run = 0;
        }
    }
}

static void test_bursty_loss(void)
{
    const uint64_t n = 200000;
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 1 * MS;
    p.loss = 0.02;
    p.burst_max = 4;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 50 * US, n, 32);
    toy_expect(&pr.b, n);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 11 * SEC), SIM_OK);
    uint64_t runs, lost, maxrun;
    loss_runs(&pr.b, n, &runs, &lost, &maxrun);
    double mean = runs ? (double)lost / (double)runs : 0;
    printf("    burst loss: %llu lost (%.3f%%) in %llu bursts, mean %.3f, max %llu\n",
           (unsigned long long)lost, 100.0 * (double)lost / (double)n,
           (unsigned long long)runs, mean, (unsigned long long)maxrun);
    TT_CHECK_EQ_U64(lost, sim_link_get_stats(pr.ab)->dropped_loss);
    TT_CHECK(maxrun <= 4);
    TT_CHECK_EQ_U64(maxrun, 4);
    TT_CHECK_RANGE(mean, 2.5 - 0.12, 2.5 + 0.12); /* uniform 1..4 */
    TT_CHECK_RANGE((double)lost / (double)n, 0.02 * 0.88, 0.02 * 1.12);
    pair_free(&pr);

    /* Gilbert-Elliott: good->bad 1%, bad->good 25%, all lost in bad: stationary loss
     * 0.01 / 0.26 = 3.85%, mean burst 4 packets. */
    sim_link_params_init(&p);
    p.delay_ns = 1 * MS;
    p.ge_p_good_to_bad = 0.01;
    p.ge_p_bad_to_good = 0.25;
    p.ge_loss_in_bad = 1.0;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 50 * US, n, 32);
    toy_expect(&pr.b, n);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 11 * SEC), SIM_OK);
    loss_runs(&pr.b, n, &runs, &lost, &maxrun);
    mean = runs ? (double)lost / (double)runs : 0;
    printf("    Gilbert-Elliott: %.3f%% lost (expect 3.846%%), mean burst %.3f (expect 4)\n",
           100.0 * (double)lost / (double)n, mean);
    TT_CHECK_RANGE((double)lost / (double)n, 0.03846 * 0.88, 0.03846 * 1.12);
    TT_CHECK_RANGE(mean, 4.0 * 0.9, 4.0 * 1.1);
    pair_free(&pr);
}

/* ---------------------------------------------------------------- reorder, duplicate, corrupt */

static void test_reorder_duplicate_corrupt(void)
{
    const uint64_t n = 20000;
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.reorder = 0.05;
    p.reorder_extra_ns = 20 * MS;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 1 * MS, n, 64);
    toy_expect(&pr.b, n);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 30 * SEC), SIM_OK);
    const sim_link_stats *st = sim_link_get_stats(pr.ab);
    double hw = binom999((double)n, 0.05);
    printf("    reorder 5%%: %llu held, %llu arrived late (interval 1000 +- %.0f)\n",
           (unsigned long long)st->reordered, (unsigned long long)pr.b.late, hw);
    TT_CHECK_RANGE(st->reordered, 1000 - hw, 1000 + hw);
    /* Held packets took exactly 10 + 20 ms, the rest 10 ms; every held packet is overtaken (the
     * next one arrives 19 ms earlier) unless only held packets follow it at the very end. */
    uint64_t held = 0, other = 0, held_tail = 0;
    for (size_t i = 0; i < pr.b.nrecs; i++) {
        uint64_t d = pr.b.recs[i].recv - pr.b.recs[i].sent;
        held += d == 30 * MS;
        other += d == 10 * MS;
    }
    for (uint64_t i = n; i-- > 0;) {
        size_t j;
        for (j = 0; j < pr.b.nrecs && pr.b.recs[j].seq != i; j++)
            ;
        if (j == pr.b.nrecs || pr.b.recs[j].recv - pr.b.recs[j].sent != 30 * MS)
            break;
        held_tail++;
    }
    TT_CHECK_EQ_U64(held, st->reordered);
    TT_CHECK_EQ_U64(held + other, n);
    TT_CHECK_EQ_U64(pr.b.late + held_tail, st->reordered);
    TT_CHECK_EQ_U64(pr.b.nrecs, n);
    pair_free(&pr);

    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.duplicate = 0.03;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 1 * MS, n, 64);
    toy_expect(&pr.b, n);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 30 * SEC), SIM_OK);
    st = sim_link_get_stats(pr.ab);
    hw = binom999((double)n, 0.03);
    printf("    duplicate 3%%: %llu copies (interval 600 +- %.0f)\n",
           (unsigned long long)st->duplicated, hw);
    TT_CHECK_RANGE(st->duplicated, 600 - hw, 600 + hw);
    TT_CHECK_EQ_U64(pr.b.dups, st->duplicated);
    TT_CHECK_EQ_U64(pr.b.nrecs, n + st->duplicated);
    TT_CHECK_EQ_U64(pr.b.late, 0);
    pair_free(&pr);

    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.corrupt = 0.02;
    pair_init(&pr, &p);
    pr.b.raw = 1;
    toy_stream(&pr.a, &pr.ba, 0, 1 * MS, n, 200);
    pr.a.raw = 1;
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 30 * SEC), SIM_OK);
    st = sim_link_get_stats(pr.ab);
    uint64_t one = 0, more = 0;
    for (size_t i = 0; i < pr.b.nrecs; i++) {
        one += pr.b.recs[i].bits == 1;
        more += pr.b.recs[i].bits > 1;
    }
    hw = binom999((double)n, 0.02);
    printf("    corrupt 2%%: %llu datagrams with one flipped bit (interval 400 +- %.0f)\n",
           (unsigned long long)one, hw);
    TT_CHECK_RANGE(st->corrupted, 400 - hw, 400 + hw);
    TT_CHECK_EQ_U64(one, st->corrupted);
    TT_CHECK_EQ_U64(more, 0);
    pair_free(&pr);
}

/* ---------------------------------------------------------------- blackholes */

static int up_at(uint64_t t)
{
    return t % (7 * SEC) < 5 * SEC;
}

static void test_blackhole(void)
{
    const uint64_t n = 2100; /* 21 s at 10 ms */
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 1 * MS;
    p.blackhole_up_ns = 5 * SEC;
    p.blackhole_down_ns = 2 * SEC;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 10 * MS + 7 * US, n, 64);
    toy_expect(&pr.b, n);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 25 * SEC), SIM_OK);
    uint64_t expect = 0, wrong = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t sent = i * (10 * MS + 7 * US);
        int want = up_at(sent) && up_at(sent + 1 * MS);
        int got = (pr.b.seen[i / 8] >> (i % 8)) & 1;
        expect += (uint64_t)want;
        wrong += (uint64_t)(want != got);
    }
    for (size_t i = 0; i < pr.b.nrecs; i++)
        TT_CHECK_MSG(up_at(pr.b.recs[i].recv), "arrival at %llu ns while down",
                     (unsigned long long)pr.b.recs[i].recv);
    const sim_link_stats *st = sim_link_get_stats(pr.ab);
    printf("    blackhole 5 s up / 2 s down: %llu of %llu delivered, %llu dropped\n",
           (unsigned long long)pr.b.nrecs, (unsigned long long)n,
           (unsigned long long)st->dropped_blackhole);
    TT_CHECK_EQ_U64(wrong, 0);
    TT_CHECK_EQ_U64(pr.b.nrecs, expect);
    TT_CHECK_EQ_U64(st->dropped_blackhole, n - expect);
    pair_free(&pr);

    /* One-off: down for [3 s, 4 s). */
    sim_link_params_init(&p);
    p.delay_ns = 1 * MS;
    pair_init(&pr, &p);
    TT_CHECK_EQ_INT(sim_link_blackhole(pr.ab, 3 * SEC, 4 * SEC), SIM_OK);
    TT_CHECK(sim_link_is_down(pr.ab, 3 * SEC));
    TT_CHECK(!sim_link_is_down(pr.ab, 4 * SEC));
    toy_stream(&pr.a, &pr.ba, 0, 10 * MS, 600, 64);
    toy_expect(&pr.b, 600);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 7 * SEC), SIM_OK);
    /* Sent at 2.99 s (arrives 2.991, passes); 3.00 .. 3.99 lost: 100 packets. */
    TT_CHECK_EQ_U64(pr.b.nrecs, 500);
    for (size_t i = 0; i < pr.b.nrecs; i++)
        TT_CHECK(pr.b.recs[i].recv < 3 * SEC || pr.b.recs[i].recv >= 4 * SEC);
    pair_free(&pr);
}

/* ---------------------------------------------------------------- determinism */

/* Runs a busy, fully impaired network and returns its trace hash; *rx gets a's echo count. */
static uint64_t impaired_run(uint64_t seed, uint64_t *rx)
{
    sim *s = sim_new(seed);
    toy a, b, c;
    tern_addr aa = ip4(1, 1000), ba = ip4(2, 2000), ca = ip4(3, 3000);
    toy_init(&a, &aa);
    toy_init(&b, &ba);
    toy_init(&c, &ca);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 15 * MS;
    p.jitter_ns = 3 * MS;
    p.rate_bps = 2000000;
    p.queue_bytes = 20000;
    p.loss = 0.02;
    p.burst_max = 3;
    p.ge_p_good_to_bad = 0.001;
    p.ge_p_bad_to_good = 0.3;
    p.ge_loss_in_bad = 0.5;
    p.reorder = 0.02;
    p.duplicate = 0.01;
    p.corrupt = 0.01;
    sim_set_default_link(s, &p);
    sim_add_node(s, &toy_ops, &a, &aa);
    sim_add_node(s, &toy_ops, &b, &ba);
    sim_add_node(s, &toy_ops, &c, &ca);
    b.echo = 1;
    toy_stream(&a, &ba, 0, 3 * MS, 2000, 600);
    toy_stream(&c, &ba, 1 * MS, 2 * MS, 3000, 300);
    toy_expect(&a, 2000);
    TT_CHECK_EQ_INT(sim_run_until(s, 10 * SEC), SIM_OK);
    uint64_t h = sim_trace_hash(s);
    *rx = a.rx;
    sim_del(s);
    toy_free(&a);
    toy_free(&b);
    toy_free(&c);
    return h;
}

static void test_same_seed_same_trace(void)
{
    uint64_t rx1, rx2, rx3;
    uint64_t h1 = impaired_run(tt_seed(), &rx1);
    uint64_t h2 = impaired_run(tt_seed(), &rx2);
    uint64_t h3 = impaired_run(tt_seed() + 1, &rx3);
    printf("    trace hashes: %016llx %016llx (seed+1: %016llx), echoes %llu %llu %llu\n",
           (unsigned long long)h1, (unsigned long long)h2, (unsigned long long)h3,
           (unsigned long long)rx1, (unsigned long long)rx2, (unsigned long long)rx3);
    TT_CHECK_EQ_U64(h1, h2);
    TT_CHECK_EQ_U64(rx1, rx2);
    TT_CHECK(h1 != h3);
    TT_CHECK(rx1 > 1000);
}

/* ---------------------------------------------------------------- the stuck guard */

typedef struct stuck_node {
    uint64_t at;
    uint64_t expiries;
} stuck_node;

static void stuck_recv(void *node, uint64_t now, const tern_addr *local, const tern_addr *remote,
                       const uint8_t *data, size_t len)
{
    (void)node, (void)now, (void)local, (void)remote, (void)data, (void)len;
}

static int stuck_send(void *node, uint64_t now, tern_datagram *dg, size_t max, uint8_t *buf,
                      size_t buf_len)
{
    (void)node, (void)now, (void)dg, (void)max, (void)buf, (void)buf_len;
    return 0;
}

static uint64_t stuck_deadline(void *node)
{
    return ((stuck_node *)node)->at; /* never moves */
}

static void stuck_expire(void *node, uint64_t now)
{
    (void)now;
    ((stuck_node *)node)->expiries++;
}

static const sim_node_ops stuck_ops = {stuck_recv, stuck_send, stuck_deadline, stuck_expire};

static void creep_expire(void *node, uint64_t now)
{
    stuck_node *sn = node;
    sn->expiries++;
    sn->at = now + 1;
}

static const sim_node_ops creep_ops = {stuck_recv, stuck_send, stuck_deadline, creep_expire};

static void test_stuck_guard(void)
{
    sim *s = sim_new(tt_seed());
    stuck_node sn = {5 * MS, 0};
    tern_addr a = ip4(9, 9);
    sim_add_node(s, &stuck_ops, &sn, &a);
    uint64_t t0 = tt_wall_ns();
    int rc = sim_run_until(s, 1 * SEC);
    TT_CHECK_EQ_INT(rc, SIM_ERR_STUCK);
    TT_CHECK(strstr(sim_error(s), "does not move") != NULL);
    TT_CHECK_EQ_U64(sim_now(s), 5 * MS);
    TT_CHECK_EQ_U64(sn.expiries, 1000);
    /* the guard stops the run at once; 30 s of wall only catches a hang (a wall-clock bound
     * tighter than that would fail on a loaded machine: speed is the benchmark's business) */
    TT_CHECK((tt_wall_ns() - t0) < 30 * SEC);
    /* The failure is sticky. */
    TT_CHECK_EQ_INT(sim_run_until(s, 2 * SEC), SIM_ERR_STUCK);
    sim_del(s);

    /* Two echo nodes over a zero-delay link bounce one datagram forever at one instant. */
    s = sim_new(tt_seed());
    sim_set_stall_limits(s, 1000, 20000);
    toy x, y;
    tern_addr xa = ip4(1, 1), ya = ip4(2, 2);
    toy_init(&x, &xa);
    toy_init(&y, &ya);
    x.echo = y.echo = 1;
    sim_add_node(s, &toy_ops, &x, &xa);
    sim_add_node(s, &toy_ops, &y, &ya);
    uint8_t d[8] = {0};
    TT_CHECK_EQ_INT(sim_inject(s, 1 * MS, &ya, &xa, d, sizeof(d)), SIM_OK);
    rc = sim_run_until(s, 1 * SEC);
    TT_CHECK_EQ_INT(rc, SIM_ERR_STUCK);
    TT_CHECK(strstr(sim_error(s), "clock stuck") != NULL);
    TT_CHECK_EQ_U64(sim_now(s), 1 * MS);
    sim_del(s);
    toy_free(&x);
    toy_free(&y);

    /* A timer that creeps forward by 1 ns at a time exhausts the step budget. */
    s = sim_new(tt_seed());
    sim_set_step_budget(s, 10000);
    stuck_node creep = {1 * MS, 0};
    sim_add_node(s, &creep_ops, &creep, &a);
    TT_CHECK_EQ_INT(sim_run_until(s, 1 * SEC), SIM_ERR_STUCK);
    TT_CHECK(strstr(sim_error(s), "creeping") != NULL);
    TT_CHECK_EQ_U64(creep.expiries, 10000);
    sim_del(s);
}

/* ---------------------------------------------------------------- middleboxes and injection */

typedef struct nat {
    tern_addr inside, outside1, outside2;
    uint64_t rebind_at;
} nat;

/* Rewrites a's source to the NAT's outside address (which changes at rebind_at) and maps
 * replies to either outside address back to a. */
static int nat_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    nat *n = user;
    (void)s;
    if (tern_addr_equal(&pkt->from, &n->inside))
        pkt->from = now < n->rebind_at ? n->outside1 : n->outside2;
    else if (tern_addr_equal(&pkt->to, &n->outside1) || tern_addr_equal(&pkt->to, &n->outside2))
        pkt->to = n->inside;
    return SIM_PASS;
}

/* On-path attacker: flips the last byte of even-numbered datagrams, drops every third, and
 * injects a copy of every fifth. */
static int mitm_box(void *user, sim *s, uint64_t now, sim_packet *pkt)
{
    uint64_t *count = user;
    uint64_t i = (*count)++;
    (void)now;
    if (i % 3 == 2)
        return SIM_DROP;
    if (i % 5 == 0)
        sim_transmit(s, &pkt->from, &pkt->to, pkt->data, pkt->len);
    if (i % 2 == 0)
        pkt->data[pkt->len - 1] ^= 0xff;
    return SIM_PASS;
}

static void test_middlebox_nat_mitm_inject(void)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 5 * MS;
    pair pr;
    pair_init(&pr, &p);
    sim_set_default_link(pr.s, &p);
    nat n = {pr.aa, ip4(100, 40000), ip4(100, 40001), 1 * SEC};
    sim_set_middlebox(pr.s, nat_box, &n);
    pr.b.echo = 1;
    toy_stream(&pr.a, &pr.ba, 0, 10 * MS, 200, 64);
    toy_expect(&pr.a, 200);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 3 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(pr.a.nrecs, 200);           /* every echo found its way back */
    TT_CHECK_EQ_INT(pr.b.remote_changes, 1);    /* b saw the rebinding once */
    TT_CHECK(tern_addr_equal(&pr.b.last_remote, &n.outside2));
    TT_CHECK(tern_addr_equal(&pr.a.last_remote, &pr.ba));
    pair_free(&pr);

    pair_init(&pr, &p);
    uint64_t count = 0;
    sim_link_set_middlebox(pr.ab, mitm_box, &count);
    toy_stream(&pr.a, &pr.ba, 0, 10 * MS, 30, 64);
    toy_expect(&pr.b, 30);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 2 * SEC), SIM_OK);
    /* 30 seen: 10 dropped (i % 3 == 2); copies injected for i = 0, 10, 15, 25: 24 arrive. */
    TT_CHECK_EQ_U64(count, 30);
    TT_CHECK_EQ_U64(sim_link_get_stats(pr.ab)->dropped_middlebox, 10);
    TT_CHECK_EQ_U64(pr.b.nrecs, 24);
    uint64_t flipped = 0;
    for (size_t i = 0; i < pr.b.nrecs; i++)
        flipped += pr.b.recs[i].bits == 8;
    TT_CHECK_EQ_U64(flipped, 10); /* even i not dropped: 0,4,6,10,12,16,18,22,24,28 */

    /* A forged datagram from a spoofed address lands at exactly the time asked. */
    tern_addr spoof = ip4(66, 6666);
    uint8_t forged[24] = {0};
    put_u64(forged, 424242);
    TT_CHECK_EQ_INT(sim_inject(pr.s, 2500 * MS, &spoof, &pr.ba, forged, sizeof(forged)), SIM_OK);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 3 * SEC), SIM_OK);
    TT_REQUIRE(pr.b.nrecs == 25);
    TT_CHECK_EQ_U64(pr.b.recs[24].seq, 424242);
    TT_CHECK_EQ_U64(pr.b.recs[24].recv, 2500 * MS);
    TT_CHECK(tern_addr_equal(&pr.b.last_remote, &spoof));

    /* To an address nobody holds: counted as unroutable. */
    tern_addr nowhere = ip4(77, 7);
    TT_CHECK_EQ_INT(sim_transmit(pr.s, &pr.aa, &nowhere, forged, 8), SIM_OK);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 4 * SEC), SIM_OK);
    sim_stats ss;
    sim_get_stats(pr.s, &ss);
    TT_CHECK_EQ_U64(ss.unroutable, 1);
    TT_CHECK_EQ_U64(ss.injected, 1);
    pair_free(&pr);
}

/* ---------------------------------------------------------------- links and addresses */

static void test_link_selection_and_addresses(void)
{
    sim *s = sim_new(tt_seed());
    toy a, b, c;
    tern_addr aa = ip4(1, 1), a2 = ip4(11, 1), ba = ip4(2, 2), ca = ip4(3, 3);
    toy_init(&a, &aa);
    toy_init(&b, &ba);
    toy_init(&c, &ca);
    sim_node *na = sim_add_node(s, &toy_ops, &a, &aa);
    TT_REQUIRE(na != NULL);
    TT_CHECK(sim_add_node(s, &toy_ops, &b, &aa) == NULL); /* address taken */
    TT_REQUIRE(sim_add_node(s, &toy_ops, &b, &ba) != NULL);
    TT_REQUIRE(sim_add_node(s, &toy_ops, &c, &ca) != NULL);
    TT_CHECK_EQ_INT(sim_node_add_addr(s, na, &a2), SIM_OK);
    TT_CHECK(sim_node_at(s, &a2) == na);
    TT_CHECK(sim_node_ptr(na) == &a);

    sim_link_params def, pn, pa;
    sim_link_params_init(&def);
    def.delay_ns = 1 * MS;
    sim_set_default_link(s, &def);
    sim_link_params_init(&pn);
    pn.delay_ns = 2 * MS;
    sim_link_params_init(&pa);
    pa.delay_ns = 3 * MS;
    sim_link *ln = sim_link_set_node(s, na, NULL, &pn); /* a, any address, to anyone */
    sim_link *la = sim_link_set(s, &a2, &ba, &pa);      /* a's second address to b only */
    TT_CHECK(sim_link_lookup(s, &aa, &ba) == ln);
    TT_CHECK(sim_link_lookup(s, &a2, &ba) == la);
    TT_CHECK(sim_link_lookup(s, &a2, &ca) == ln);
    sim_link *lbc = sim_link_lookup(s, &ba, &ca);
    TT_CHECK_EQ_U64(sim_link_get_params(lbc)->delay_ns, 1 * MS);
    def.delay_ns = 4 * MS; /* the per-pair default follows the default */
    sim_set_default_link(s, &def);
    TT_CHECK_EQ_U64(sim_link_get_params(lbc)->delay_ns, 4 * MS);

    TT_CHECK_EQ_INT(sim_node_del_addr(s, na, &a2), SIM_OK);
    TT_CHECK(sim_node_at(s, &a2) == NULL);
    TT_CHECK_EQ_INT(sim_node_del_addr(s, na, &a2), SIM_ERR_INVALID);

    /* A node removed mid-run: traffic to it becomes unroutable. */
    sim_node *nc = sim_node_at(s, &ca);
    toy_stream(&a, &ca, 0, 10 * MS, 100, 32);
    toy_expect(&c, 100);
    TT_CHECK_EQ_INT(sim_run_until(s, 500 * MS), SIM_OK);
    uint64_t got = c.nrecs;
    sim_node_remove(s, nc);
    TT_CHECK_EQ_INT(sim_run_until(s, 2 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(c.nrecs, got);
    TT_CHECK_RANGE(got, 49, 51);
    TT_CHECK_EQ_U64(sim_link_get_stats(ln)->unroutable + got, 100);
    sim_del(s);
    toy_free(&a);
    toy_free(&b);
    toy_free(&c);
}

static int fewer_than(void *arg)
{
    const toy *t = arg;
    return t->nrecs < 50;
}

static void test_run_while_and_quiet(void)
{
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 7 * MS;
    pair pr;
    pair_init(&pr, &p);
    toy_stream(&pr.a, &pr.ba, 0, 10 * MS, 100, 32);
    toy_expect(&pr.b, 100);
    TT_CHECK_EQ_INT(sim_run_while(pr.s, fewer_than, &pr.b, 10 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(pr.b.nrecs, 50);
    TT_CHECK_EQ_U64(sim_now(pr.s), 49 * 10 * MS + 7 * MS); /* stops at the 50th arrival */
    /* Not reachable before 1 s: timeout with the clock at t_max. */
    pr.b.nrecs = 0;
    TT_CHECK_EQ_INT(sim_run_while(pr.s, fewer_than, &pr.b, 600 * MS), SIM_TIMEOUT);
    TT_CHECK_EQ_U64(sim_now(pr.s), 600 * MS);
    TT_CHECK_EQ_INT(sim_run_until_quiet(pr.s, 10 * SEC), SIM_OK);
    TT_CHECK(sim_now(pr.s) <= 600 * MS + 7 * MS);
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 10 * SEC), SIM_OK);
    TT_CHECK_EQ_U64(pr.a.sent, 100);
    pair_free(&pr);
}

/* ---------------------------------------------------------------- scale and speed */

static void test_many_nodes(void)
{
    enum { PAIRS = 2000 };
    sim *s = sim_new(tt_seed());
    toy *t = calloc(2 * PAIRS, sizeof(*t));
    TT_REQUIRE(s && t);
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 10 * MS;
    p.jitter_ns = 2 * MS;
    sim_set_default_link(s, &p);
    for (unsigned i = 0; i < PAIRS; i++) {
        tern_addr ca, sa;
        tern_addr_ipv4(&ca, 10, 1, (uint8_t)(i >> 8), (uint8_t)i, 1000);
        tern_addr_ipv4(&sa, 10, 2, (uint8_t)(i >> 8), (uint8_t)i, 2000);
        toy_init(&t[2 * i], &ca);
        toy_init(&t[2 * i + 1], &sa);
        t[2 * i + 1].echo = 1;
        toy_stream(&t[2 * i], &sa, i * 1000, 20 * MS, 100, 100);
        TT_REQUIRE(sim_add_node(s, &toy_ops, &t[2 * i], &ca) != NULL);
        TT_REQUIRE(sim_add_node(s, &toy_ops, &t[2 * i + 1], &sa) != NULL);
    }
    uint64_t w0 = tt_wall_ns();
    TT_CHECK_EQ_INT(sim_run_until(s, 3 * SEC), SIM_OK);
    double wall = (double)(tt_wall_ns() - w0) / 1e9;
    uint64_t echoes = 0;
    for (unsigned i = 0; i < PAIRS; i++)
        echoes += t[2 * i].nrecs;
    sim_stats st;
    sim_get_stats(s, &st);
    printf("    %d nodes: %llu datagrams, %llu expiries in %.3f s wall\n", 2 * PAIRS,
           (unsigned long long)st.datagrams_sent, (unsigned long long)st.expiries, wall);
    TT_CHECK_EQ_U64(echoes, (uint64_t)PAIRS * 100);
    TT_CHECK_MSG(wall < 60.0, "hung: %.3f s", wall); /* a hang guard, not a speed test */
    sim_del(s);
    for (unsigned i = 0; i < 2 * PAIRS; i++)
        toy_free(&t[i]);
    free(t);
}

static void test_speed(void)
{
    /* 150-byte datagrams every 120 us: 8,333 datagrams/s = 10 Mbit/s, echoed back. */
    sim_link_params p;
    sim_link_params_init(&p);
    p.delay_ns = 20 * MS;
    p.jitter_ns = 1 * MS;
    p.rate_bps = 10000000;
    p.queue_bytes = 65536;
    p.loss = 0.001;
    pair pr;
    pair_init(&pr, &p);
    sim_set_default_link(pr.s, &p);
    pr.b.echo = 1;
    toy_stream(&pr.a, &pr.ba, 0, 120 * US, 83334, 150);
    toy_expect(&pr.a, 83334);
    uint64_t w0 = tt_wall_ns();
    TT_CHECK_EQ_INT(sim_run_until(pr.s, 10 * SEC), SIM_OK);
    double wall = (double)(tt_wall_ns() - w0) / 1e9;
    sim_stats st;
    sim_get_stats(pr.s, &st);
    printf("    speed: 10 s of 10 Mbit/s each way (%llu datagrams) in %.3f s wall = %.0f s of "
           "network time per wall second\n",
           (unsigned long long)st.datagrams_sent, wall, 10.0 / wall);
    TT_CHECK(pr.a.nrecs > 80000);
    TT_CHECK_MSG(wall < 60.0, "hung: %.3f s", wall); /* the speed is reported, not asserted */
    pair_free(&pr);
}

/* ---------------------------------------------------------------- tt itself */

static void test_tt_mem(void)
{
    tt_mem m;
    tt_mem_init(&m);
    const tern_mem *h = &m.mem;
    void *a = h->malloc(100, h->user);
    void *b = h->malloc(1000, h->user);
    TT_REQUIRE(a && b);
    TT_CHECK(((uintptr_t)a % _Alignof(max_align_t)) == 0);
    TT_CHECK_EQ_U64(m.current, 1100);
    TT_CHECK_EQ_U64(m.live, 2);
    h->free(b, 1000, h->user);
    TT_CHECK_EQ_U64(m.current, 100);
    TT_CHECK_EQ_U64(m.peak, 1100);
    m.report = 0;
    h->free(a, 99, h->user); /* wrong size: caught */
    TT_CHECK_EQ_U64(m.bad_frees, 1);
    TT_CHECK_EQ_U64(m.live, 0);
    m.bad_frees = 0;
    m.report = 1;
    TT_CHECK(tt_mem_check_clean(&m, "tt_mem"));
    m.fail_at = m.calls + 2; /* the second call from here fails */
    void *c = h->malloc(8, h->user);
    void *d = h->malloc(8, h->user);
    void *e = h->malloc(8, h->user);
    TT_CHECK(c != NULL && d == NULL && e != NULL);
    h->free(c, 8, h->user);
    h->free(e, 8, h->user);
    TT_CHECK(tt_mem_check_clean(&m, "tt_mem"));
}

static void test_tt_rng(void)
{
    tt_rng r1, r2;
    tt_rng_seed(&r1, 42);
    tt_rng_seed(&r2, 42);
    for (int i = 0; i < 100; i++)
        TT_CHECK_EQ_U64(tt_rng_next(&r1), tt_rng_next(&r2));
    tt_rng_seed(&r2, 43);
    TT_CHECK(tt_rng_next(&r1) != tt_rng_next(&r2));
    uint64_t counts[6] = {0};
    for (int i = 0; i < 60000; i++) {
        uint64_t v = tt_rng_below(&r1, 6);
        TT_REQUIRE(v < 6);
        counts[v]++;
    }
    for (int i = 0; i < 6; i++)
        TT_CHECK_RANGE(counts[i], 10000 - binom999(60000, 1.0 / 6), 10000 + binom999(60000, 1.0 / 6));
    tt_rng saved = r1;
    TT_CHECK(!tt_rng_chance(&r1, 0.0));
    TT_CHECK(tt_rng_chance(&r1, 1.0));
    TT_CHECK_EQ_U64(tt_rng_next(&r1), tt_rng_next(&saved)); /* no draws for 0 or 1 */
    uint8_t x[13], y[13];
    tt_rng_seed(&r1, 7);
    tt_rng_seed(&r2, 7);
    tt_rand_fill(x, sizeof(x), &r1);
    tt_rand_fill(y, sizeof(y), &r2);
    TT_CHECK(memcmp(x, y, sizeof(x)) == 0);
    TT_CHECK(tt_derive_seed(1, 1) != tt_derive_seed(1, 2));
    sim *s = sim_new(5);
    TT_REQUIRE(s != NULL);
    TT_CHECK(sim_derive_seed(s, 1) != sim_derive_seed(s, 2));
    sim_del(s);
}

static const tt_case cases[] = {
    TT_CASE(test_tt_mem),
    TT_CASE(test_tt_rng),
    TT_CASE(test_delay_exact),
    TT_CASE(test_jitter_keeps_fifo),
    TT_CASE(test_rate_and_drop_tail),
    TT_CASE(test_random_loss),
    TT_CASE(test_bursty_loss),
    TT_CASE(test_reorder_duplicate_corrupt),
    TT_CASE(test_blackhole),
    TT_CASE(test_same_seed_same_trace),
    TT_CASE(test_stuck_guard),
    TT_CASE(test_middlebox_nat_mitm_inject),
    TT_CASE(test_link_selection_and_addresses),
    TT_CASE(test_run_while_and_quiet),
    TT_CASE(test_many_nodes),
    TT_CASE(test_speed),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
