/*
 * Memory budgets and per-source limits against authenticated attackers (issue 12, rows H2 and
 * M5). Each attacker is a real client that completed the handshake with a fresh key; the test
 * then seals its own 1-RTT packets with that client's keys (as fuzz/fuzz_conn.c does) and sends
 * well-formed flow fragments that a server must buffer: fragments 1..window-1 on every flow,
 * never fragment 0, so nothing can ever be delivered. A legitimate client on the same server
 * sends a message every 20 ms and must get each one echoed back throughout.
 *
 * Every case prints the figures it measured (lines starting with "budget:").
 */
#include <stdio.h>
#include <string.h>

#include "core/conn.h"
#include "support/tnet.h"

#define MS (1000000ull)
#define S (1000000000ull)
#define FRAG_LEN 1100 /* payload of one forged fragment: a full packet at 1200 bytes */

static tern_addr SA; /* the server */

static void addr4(tern_addr *a, uint8_t x, uint8_t y, uint16_t port)
{
    tern_addr_ipv4(a, 198, 51, x, y, port);
}

static sim *new_sim(void)
{
    sim *s = sim_new(tt_seed());
    TT_REQUIRE(s != NULL);
    sim_link_params lp;
    sim_link_params_init(&lp);
    lp.delay_ns = 10 * MS; /* every pair: 20 ms RTT */
    sim_set_default_link(s, &lp);
    tern_addr_ipv4(&SA, 192, 0, 2, 1, 4433);
    return s;
}

static void server_settings(tern_settings *set)
{
    tern_settings_server_default(set);
    set->handshake_rate = 100000; /* this file tests memory, not the handshake rate limit */
    set->handshake_burst = 100000;
}

/* ---------------------------------------------------------------- the legitimate client */

/* The server echoes every message it receives on a flow of its own toward the sender. */
typedef struct echo_state {
    tern_conn *conn;
    uint64_t flow;
    uint64_t echoed, failed;
} echo_state;

static echo_state g_echo;

static void server_echo(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    (void)n;
    (void)flow;
    if (g_echo.conn != c) {
        g_echo.conn = c;
        if (tern_flow_open(c, NULL, &g_echo.flow) != TERN_OK) {
            g_echo.failed++;
            return;
        }
    }
    if (tern_flow_send(c, g_echo.flow, 0, d, len, -1) == TERN_OK) g_echo.echoed++;
    else g_echo.failed++;
}

typedef struct legit {
    tnet_node node;
    uint64_t flow;
    uint64_t sent;
    uint64_t next_at;
} legit;

static void legit_start(sim *s, legit *l, tnet_node *srv)
{
    tern_addr a;
    addr4(&a, 200, 1, 40000);
    tnet_node_init(&l->node, s, &a, 0, NULL, 100);
    memset(&g_echo, 0, sizeof(g_echo));
    srv->on_message = server_echo;
    tnet_connect(s, &l->node, srv, NULL);
    sim_run_until(s, sim_now(s) + 200 * MS);
    TT_REQUIRE(l->node.established == 1);
    TT_REQUIRE(tern_flow_open(l->node.conn, NULL, &l->flow) == TERN_OK);
    l->sent = 0;
    l->next_at = sim_now(s);
}

/* Sends one 200-byte message every 20 ms of simulated time. */
static void legit_tick(sim *s, legit *l)
{
    uint8_t msg[200];
    while (sim_now(s) >= l->next_at) {
        memset(msg, (int)(l->sent & 0xff), sizeof(msg));
        if (l->node.conn && tern_flow_send(l->node.conn, l->flow, sim_now(s), msg, sizeof(msg),
                                           -1) == TERN_OK)
            l->sent++;
        l->next_at += 20 * MS;
    }
}

/* ---------------------------------------------------------------- the attacker */

typedef struct attacker {
    tnet_node node;
    tern_conn *srv_conn; /* the server's side of it (valid while the server has not closed it) */
    uint64_t flow, fsn;  /* the next fragment it sends */
    uint64_t sent;       /* fragments sent */
    int srv_closed_seen;
} attacker;

/* Connects a new client from addr; returns 1 when established (and fills a->srv_conn), 0 when
 * the handshake failed (a->node.close_err says why). */
static int attacker_connect(sim *s, attacker *a, tnet_node *srv, const tern_addr *addr,
                            uint64_t stream)
{
    memset(a, 0, sizeof(*a));
    tnet_node_init(&a->node, s, addr, 0, NULL, stream);
    tnet_connect(s, &a->node, srv, NULL);
    uint64_t until = sim_now(s) + 1 * S;
    while (sim_now(s) < until && !a->node.established && !a->node.closed)
        sim_run_until(s, sim_now(s) + 5 * MS);
    if (!a->node.established) return 0;
    sim_run_until(s, sim_now(s) + 30 * MS); /* the server saw our first 1-RTT packet */
    a->srv_conn = srv->conn;                /* the connection accepted last */
    a->fsn = 1;
    return 1;
}

/* One forged packet: a middle fragment (no BEGIN, no END) at fsn on flow, sealed with the
 * client's keys. */
static void attacker_send(sim *s, attacker *a, uint64_t flow, uint64_t fsn)
{
    tern_conn *c = a->node.conn;
    TT_REQUIRE(c != NULL);
    uint8_t frames[1300], pkt[TERN_MAX_DATAGRAM];
    uint8_t *p = frames, *end = frames + sizeof(frames);
    p = tern__put_varint(p, end, TERN__FRAME_FLOW_DATA);
    p = tern__put_varint(p, end, flow);
    p = tern__put_varint(p, end, fsn);
    p = tern__put_varint(p, end, TERN__FD_ORDERED);
    p = tern__put_varint(p, end, FRAG_LEN);
    TT_REQUIRE(p != NULL);
    memset(p, 0x5a, FRAG_LEN);
    size_t flen = (size_t)(p + FRAG_LEN - frames);
    uint64_t pn = c->tx.next_pn++;
    uint8_t *q = tern__short_encode(pkt, pkt + sizeof(pkt), 0, c->remote_cid, pn, 4);
    TT_REQUIRE(q != NULL);
    size_t hl = (size_t)(q - pkt);
    TT_REQUIRE(tern__aead_seal(&c->keys.tx, pn, 0, pkt, hl, frames, flen, q) == TERN_OK);
    TT_REQUIRE(sim_inject(s, sim_now(s), &a->node.addr, &SA, pkt, hl + flen + 16) == 0);
    a->sent++;
}

/* The next fragment of the H2 pattern: fsn 1..window-1 on flow 0, then on flow 2, ... (client
 * flows have even ids), never fsn 0. Returns 0 when the pattern is exhausted. */
static int attacker_next(sim *s, attacker *a, uint64_t window, uint64_t max_flows)
{
    if (a->flow / 2 >= max_flows) return 0;
    attacker_send(s, a, a->flow, a->fsn);
    if (++a->fsn >= window) {
        a->fsn = 1;
        a->flow += 2;
    }
    return 1;
}

static uint64_t mem_now(const tnet_node *srv)
{
    return tnet_stats(srv).mem_current;
}

/* ---------------------------------------------------------------- (a) H2 */

typedef struct h2_result {
    uint64_t pre, peak, idle_cost, max_conn_mem, fragments, closed_budget, closed_nomem;
    uint64_t legit_sent, legit_echoed_during, close_code;
    char reason[300];
} h2_result;

/* n attackers run the H2 pattern at once against a server with conn_memory (0: none) and
 * max_memory; a legitimate client exchanges messages throughout. */
static void run_h2(int n, uint64_t conn_memory, uint64_t max_memory, h2_result *r)
{
    memset(r, 0, sizeof(*r));
    sim *s = new_sim();
    tern_settings set;
    server_settings(&set);
    set.conn_memory = conn_memory;
    set.max_memory = max_memory;
    tnet_node srv;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    uint64_t base = mem_now(&srv);
    static legit l;
    memset(&l, 0, sizeof(l));
    legit_start(s, &l, &srv);
    static attacker at[4];
    uint64_t before_attackers = mem_now(&srv);
    for (int i = 0; i < n; i++) {
        tern_addr a;
        addr4(&a, 100, (uint8_t)(1 + i), 50000);
        TT_REQUIRE(attacker_connect(s, &at[i], &srv, &a, (uint64_t)(10 + i)));
    }
    r->idle_cost = (mem_now(&srv) - before_attackers) / (uint64_t)n;
    r->pre = mem_now(&srv);
    uint64_t echoes_before = l.node.messages;
    /* the attack: all attackers interleaved, 8 packets each per millisecond, the legitimate
     * client's message every 20 ms */
    int active = n;
    while (active > 0 && sim_now(s) < 60 * S) {
        active = 0;
        for (int i = 0; i < n; i++) {
            attacker *a = &at[i];
            if (a->node.closed) continue;
            for (int k = 0; k < 8; k++) {
                if (!attacker_next(s, a, set.flow_window, set.max_flows)) break;
                r->fragments++;
            }
            /* the server side of it, while the server has not closed it */
            if (!a->srv_closed_seen && a->srv_conn != NULL) {
                uint64_t m = tern_conn_memory(a->srv_conn);
                if (m > r->max_conn_mem) r->max_conn_mem = m;
                if (tern_conn_get_state(a->srv_conn) != TERN_CONN_ESTABLISHED)
                    a->srv_closed_seen = 1;
            }
            if (a->flow / 2 < set.max_flows && !a->node.closed) active++;
        }
        legit_tick(s, &l);
        sim_run_until(s, sim_now(s) + 1 * MS);
        for (int i = 0; i < n; i++) /* the server's handle is freed some PTOs after it closed */
            if (at[i].node.closed) at[i].srv_closed_seen = 1;
    }
    tern_endpoint_stats st = tnet_stats(&srv);
    r->peak = st.mem_peak;
    r->closed_budget = st.conns_closed_budget;
    r->closed_nomem = st.conns_closed_nomem;
    r->legit_sent = l.sent;
    r->legit_echoed_during = l.node.messages - echoes_before;
    r->close_code = at[0].node.close_code;
    memcpy(r->reason, at[0].node.reason, sizeof(r->reason));
    /* the legitimate client is still served: every message echoed once the attack is over */
    sim_run_until(s, sim_now(s) + 500 * MS);
    TT_CHECK_EQ_INT(l.node.closed, 0);
    TT_CHECK_EQ_U64(l.node.messages, l.sent);
    TT_CHECK_MSG(r->legit_echoed_during + 2 >= r->legit_sent,
                 "legitimate client starved: %llu of %llu echoed during the attack",
                 (unsigned long long)r->legit_echoed_during, (unsigned long long)r->legit_sent);
    /* everything given back once the attackers are gone */
    for (int i = 0; i < n; i++) {
        if (!at[i].node.closed && at[i].node.conn)
            tern_conn_close(at[i].node.conn, sim_now(s), 0, "", 0);
    }
    sim_run_until(s, sim_now(s) + 3 * S);
    for (int i = 0; i < n; i++) tnet_node_free(&at[i].node, s);
    tern_conn_close(l.node.conn, sim_now(s), 0, "", 0);
    sim_run_until(s, sim_now(s) + 3 * S);
    st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_current, 0);
    TT_CHECK_EQ_U64(st.sources_current, 0);
    TT_CHECK_MSG(st.mem_current == base, "memory after the attack %llu, before %llu",
                 (unsigned long long)st.mem_current, (unsigned long long)base);
    tnet_node_free(&l.node, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static void test_h2_one_attacker(void)
{
    tern_settings set;
    server_settings(&set);
    const uint64_t budget = set.conn_memory;
    h2_result nob, r;
    /* without a budget the same attack makes the server hold all it may under flow control */
    run_h2(1, 0, 0, &nob);
    run_h2(1, budget, set.max_memory, &r);
    printf("budget: H2, 1 attacker, flow_window %u x max_flows %u: without conn_memory the server "
           "grew by %llu bytes (%llu fragments, never closed); with conn_memory %llu it grew by at "
           "most %llu (connection accounted at most %llu) and closed the attacker after %llu "
           "fragments with code %llu \"%s\"; idle connection %llu bytes; legitimate client: %llu "
           "of %llu messages echoed during the attack\n",
           set.flow_window, set.max_flows, (unsigned long long)(nob.peak - nob.pre),
           (unsigned long long)nob.fragments, (unsigned long long)budget,
           (unsigned long long)(r.peak - r.pre), (unsigned long long)r.max_conn_mem,
           (unsigned long long)r.fragments, (unsigned long long)r.close_code, r.reason,
           (unsigned long long)r.idle_cost, (unsigned long long)r.legit_echoed_during,
           (unsigned long long)r.legit_sent);
    /* the attack is real: without a budget it holds more than the budget */
    TT_CHECK_MSG(nob.peak - nob.pre > 2 * budget, "unbounded attack grew only %llu",
                 (unsigned long long)(nob.peak - nob.pre));
    TT_CHECK_EQ_U64(nob.closed_budget, 0);
    /* with it: the connection never holds more than the budget, the endpoint grows by at most
     * the budget (and a little for the legitimate client), the attacker is closed and told */
    TT_CHECK_MSG(r.max_conn_mem <= budget, "connection held %llu > %llu",
                 (unsigned long long)r.max_conn_mem, (unsigned long long)budget);
    TT_CHECK_MSG(r.peak - r.pre <= budget + 64 * 1024, "server grew by %llu",
                 (unsigned long long)(r.peak - r.pre));
    TT_CHECK_EQ_U64(r.closed_budget, 1);
    TT_CHECK_EQ_U64(r.closed_nomem, 0);
    TT_CHECK_EQ_U64(r.close_code, TERN__TERR_BUDGET);
    TT_CHECK(strcmp(r.reason, "memory budget exceeded") == 0);
    TT_CHECK(r.fragments < 2000); /* closed long before the flow-control limit (2040) */
}

static void test_h2_four_attackers(void)
{
    tern_settings set;
    server_settings(&set);
    const uint64_t budget = set.conn_memory;
    const uint64_t max_memory = 8u << 20; /* room for four budgets and the rest */
    h2_result r;
    run_h2(4, budget, max_memory, &r);
    printf("budget: H2, 4 attackers at once, conn_memory %llu, max_memory %llu: server grew by "
           "%llu bytes (peak %llu), %llu connections closed for their budget, %llu for memory; "
           "legitimate client: %llu of %llu messages echoed during the attack\n",
           (unsigned long long)budget, (unsigned long long)max_memory,
           (unsigned long long)(r.peak - r.pre), (unsigned long long)r.peak,
           (unsigned long long)r.closed_budget, (unsigned long long)r.closed_nomem,
           (unsigned long long)r.legit_echoed_during, (unsigned long long)r.legit_sent);
    TT_CHECK(r.peak <= max_memory);
    TT_CHECK_MSG(r.peak - r.pre <= 4 * budget + 64 * 1024, "server grew by %llu",
                 (unsigned long long)(r.peak - r.pre));
    TT_CHECK_EQ_U64(r.closed_budget, 4);
    TT_CHECK_EQ_U64(r.closed_nomem, 0);
    TT_CHECK(r.max_conn_mem <= budget);
}

/* ---------------------------------------------------------------- (b) near max_memory */

static void test_near_max_memory_refuses_newcomers(void)
{
    sim *s = new_sim();
    tern_settings set;
    server_settings(&set);
    const uint64_t max_memory = 4u << 20;
    set.max_memory = max_memory;
    tnet_node srv;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    uint64_t base = mem_now(&srv);
    static legit l;
    memset(&l, 0, sizeof(l));
    legit_start(s, &l, &srv);
    /* holders: attackers that each make the server hold about 450 KB, within their budget, and
     * then wait; more of them connect until the server refuses one */
    enum { MAXH = 12, HOLD_FRAGS = 400 };
    static attacker h[MAXH];
    int n = 0, refused_at = -1;
    uint64_t refused_mem = 0, refused_after = 0;
    for (int i = 0; i < MAXH; i++) {
        tern_addr a;
        addr4(&a, 101, (uint8_t)(1 + i), 50000);
        uint64_t t0 = sim_now(s), mem_before = mem_now(&srv);
        legit_tick(s, &l);
        int ok = attacker_connect(s, &h[i], &srv, &a, (uint64_t)(20 + i));
        n = i + 1;
        if (!ok) {
            refused_at = i;
            refused_mem = mem_before;
            refused_after = sim_now(s) - t0; /* attacker_connect looks every 5 ms */
            TT_CHECK_MSG(h[i].node.close_err == TERN_ERR_REFUSED, "newcomer: %s",
                         tern_strerror(h[i].node.close_err));
            break;
        }
        for (int k = 0; k < HOLD_FRAGS; k++) {
            TT_REQUIRE(attacker_next(s, &h[i], set.flow_window, set.max_flows));
            if (k % 8 == 7) {
                legit_tick(s, &l);
                sim_run_until(s, sim_now(s) + 1 * MS);
            }
        }
        sim_run_until(s, sim_now(s) + 20 * MS);
        TT_REQUIRE_MSG(!h[i].node.closed, "holder %d closed: %s", i,
                       tern_strerror(h[i].node.close_err));
    }
    tern_endpoint_stats st = tnet_stats(&srv);
    TT_REQUIRE_MSG(refused_at > 0, "no handshake refused with %d holders", n);
    TT_CHECK_EQ_U64(st.conns_refused_memory, 1);
    TT_CHECK(refused_mem > max_memory - max_memory / 8);
    TT_CHECK(refused_after < 200 * MS); /* the REJECT: one round trip, no timeout */
    TT_CHECK(st.mem_peak <= max_memory);
    /* the old connections still work: the legitimate client is echoed, the holders stay */
    uint64_t echoed0 = l.node.messages, sent0 = l.sent;
    for (int t = 0; t < 50; t++) {
        legit_tick(s, &l);
        sim_run_until(s, sim_now(s) + 10 * MS);
    }
    TT_CHECK_EQ_INT(l.node.closed, 0);
    TT_CHECK_MSG(l.node.messages - echoed0 + 2 >= l.sent - sent0, "echoed %llu of %llu",
                 (unsigned long long)(l.node.messages - echoed0),
                 (unsigned long long)(l.sent - sent0));
    for (int i = 0; i < refused_at; i++) TT_CHECK_EQ_INT(h[i].node.closed, 0);
    /* one holder pushes on: the endpoint has less room left than the holder's budget, so the
     * allocation that would cross max_memory fails and closes that connection, no other */
    attacker *x = &h[0];
    int pushed = 0;
    while (!x->node.closed && pushed < 4000) {
        if (!attacker_next(s, x, set.flow_window, set.max_flows)) break;
        pushed++;
        if (pushed % 8 == 0) {
            legit_tick(s, &l);
            sim_run_until(s, sim_now(s) + 1 * MS);
        }
    }
    sim_run_until(s, sim_now(s) + 100 * MS);
    st = tnet_stats(&srv);
    printf("budget: max_memory %llu: %d holders of ~%u fragments each, the next handshake "
           "refused at %llu bytes (7/8 = %llu) in %.1f ms; peak %llu; the holder pushing on "
           "closed (%s) after %d more fragments; allocations refused %llu\n",
           (unsigned long long)max_memory, refused_at, HOLD_FRAGS,
           (unsigned long long)refused_mem, (unsigned long long)(max_memory - max_memory / 8),
           (double)refused_after / 1e6, (unsigned long long)st.mem_peak,
           st.conns_closed_nomem ? "memory" : "budget", pushed,
           (unsigned long long)st.mem_refused);
    TT_CHECK_EQ_INT(x->node.closed, 1);
    TT_CHECK_EQ_U64(st.conns_closed_nomem, 1);
    TT_CHECK_EQ_U64(st.conns_closed_budget, 0);
    TT_CHECK(st.mem_refused >= 1);
    TT_CHECK(st.mem_peak <= max_memory);
    for (int i = 1; i < refused_at; i++) TT_CHECK_EQ_INT(h[i].node.closed, 0);
    /* ... and the legitimate client goes on */
    echoed0 = l.node.messages;
    sent0 = l.sent;
    for (int t = 0; t < 50; t++) {
        legit_tick(s, &l);
        sim_run_until(s, sim_now(s) + 10 * MS);
    }
    TT_CHECK_EQ_INT(l.node.closed, 0);
    TT_CHECK(l.node.messages - echoed0 + 2 >= l.sent - sent0);
    /* with room again, a newcomer is accepted */
    static attacker late;
    tern_addr la;
    addr4(&la, 102, 1, 50000);
    TT_CHECK(attacker_connect(s, &late, &srv, &la, 90));
    tern_conn_close(late.node.conn, sim_now(s), 0, "", 0);
    for (int i = 0; i < n; i++)
        if (!h[i].node.closed && h[i].node.conn) tern_conn_close(h[i].node.conn, sim_now(s), 0, "", 0);
    tern_conn_close(l.node.conn, sim_now(s), 0, "", 0);
    sim_run_until(s, sim_now(s) + 3 * S);
    st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_current, 0);
    TT_CHECK_EQ_U64(st.mem_current, base);
    for (int i = 0; i < n; i++) tnet_node_free(&h[i].node, s);
    tnet_node_free(&late.node, s);
    tnet_node_free(&l.node, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- (c) per source */

static void addr6(tern_addr *a, uint8_t net, uint8_t host, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->family = TERN_AF_INET6;
    a->port = port;
    a->ip[0] = 0x20;
    a->ip[1] = 0x01;
    a->ip[2] = 0x0d;
    a->ip[3] = 0xb8;
    a->ip[7] = net;   /* the /64 */
    a->ip[15] = host; /* the interface part */
}

static void test_conns_per_ip(void)
{
    sim *s = new_sim();
    tern_settings set;
    server_settings(&set);
    TT_CHECK_EQ_INT(set.max_conns_per_ip, 256);
    const uint32_t N = 8;
    set.max_conns_per_ip = N;
    tnet_node srv;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    uint64_t base = mem_now(&srv);
    static attacker c[40];
    int k = 0;
    /* N connections from one IPv4 address (different ports, as behind a NAT) */
    for (uint32_t i = 0; i < N; i++, k++) {
        tern_addr a;
        addr4(&a, 7, 7, (uint16_t)(40000 + i));
        TT_REQUIRE_MSG(attacker_connect(s, &c[k], &srv, &a, (uint64_t)(30 + k)), "conn %u", i);
    }
    tern_endpoint_stats st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.sources_current, 1);
    /* the N+1-th from that address is refused at once */
    tern_addr a;
    addr4(&a, 7, 7, 49999);
    uint64_t t0 = sim_now(s);
    TT_CHECK(!attacker_connect(s, &c[k], &srv, &a, (uint64_t)(30 + k)));
    TT_CHECK_EQ_INT(c[k].node.close_err, TERN_ERR_REFUSED);
    uint64_t refused_in = sim_now(s) - t0; /* attacker_connect looks every 5 ms */
    TT_CHECK(refused_in < 200 * MS);
    k++;
    st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_refused_per_ip, 1);
    /* another address is served */
    addr4(&a, 7, 8, 40000);
    TT_CHECK(attacker_connect(s, &c[k], &srv, &a, (uint64_t)(30 + k)));
    k++;
    /* IPv6: a /64 counts as one source */
    for (uint32_t i = 0; i < N; i++, k++) {
        addr6(&a, 1, (uint8_t)(1 + i), 40000);
        TT_REQUIRE(attacker_connect(s, &c[k], &srv, &a, (uint64_t)(30 + k)));
    }
    addr6(&a, 1, 200, 40000);
    TT_CHECK(!attacker_connect(s, &c[k], &srv, &a, (uint64_t)(30 + k)));
    k++;
    addr6(&a, 2, 1, 40000);
    TT_CHECK(attacker_connect(s, &c[k], &srv, &a, (uint64_t)(30 + k)));
    k++;
    st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_refused_per_ip, 2);
    TT_CHECK_EQ_U64(st.sources_current, 4);
    TT_CHECK_EQ_U64(st.conns_current, 2 * N + 2);
    /* half-open connections count: Initials from an address whose answers are lost */
    tern_addr dark;
    addr4(&dark, 9, 9, 40000);
    sim_link_params lost;
    sim_link_params_init(&lost);
    lost.delay_ns = 10 * MS;
    lost.loss = 1.0;
    int k_dark = k;
    for (uint32_t i = 0; i <= N; i++, k++) {
        dark.port = (uint16_t)(40000 + i);
        TT_REQUIRE(sim_link_set(s, &SA, &dark, &lost) != NULL);
        memset(&c[k], 0, sizeof(c[k]));
        tnet_node_init(&c[k].node, s, &dark, 0, NULL, (uint64_t)(30 + k));
        tnet_connect(s, &c[k].node, &srv, NULL);
    }
    sim_run_until(s, sim_now(s) + 50 * MS);
    st = tnet_stats(&srv);
    printf("budget: max_conns_per_ip %u: the %u-th connection from one IPv4 address refused in "
           "%.1f ms (REJECT); an IPv6 /64 counted as one source; %llu half-open from a third "
           "address, %llu refused in all\n",
           N, N + 1, (double)refused_in / 1e6, (unsigned long long)st.conns_half_open,
           (unsigned long long)st.conns_refused_per_ip);
    TT_CHECK_EQ_U64(st.conns_half_open, N);
    TT_CHECK_EQ_U64(st.conns_refused_per_ip, 3);
    TT_CHECK_EQ_U64(st.sources_current, 5);
    /* everything closes: the table empties and memory is back where it started */
    for (int i = 0; i < k; i++)
        if (i < k_dark && c[i].node.conn && !c[i].node.closed)
            tern_conn_close(c[i].node.conn, sim_now(s), 0, "", 0);
    sim_run_until(s, sim_now(s) + 20 * S); /* the half-open ones time out (15 s) */
    st = tnet_stats(&srv);
    TT_CHECK_EQ_U64(st.conns_current, 0);
    TT_CHECK_EQ_U64(st.conns_half_open, 0);
    TT_CHECK_EQ_U64(st.sources_current, 0);
    TT_CHECK_EQ_U64(st.mem_current, base);
    /* and the first address may connect again */
    static attacker again;
    addr4(&a, 7, 7, 41000);
    TT_CHECK(attacker_connect(s, &again, &srv, &a, 99));
    tern_conn_close(again.node.conn, sim_now(s), 0, "", 0);
    sim_run_until(s, sim_now(s) + 3 * S);
    for (int i = 0; i < k; i++) tnet_node_free(&c[i].node, s);
    tnet_node_free(&again.node, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- sending side, profile */

static void test_send_side_budget_and_profile(void)
{
    tern_settings d, p;
    tern_settings_default(&d);
    tern_settings_server_default(&p);
    TT_CHECK_EQ_U64(d.conn_memory, 0);
    TT_CHECK_EQ_U64(p.conn_memory, 1u << 20);
    TT_CHECK_EQ_U64(p.max_memory, 2ull << 30);
    TT_CHECK_EQ_INT(p.flow_window, 256);
    TT_CHECK_EQ_INT(p.max_flows, 8);
    TT_CHECK_EQ_U64(p.send_buffer, 256u << 10);
    sim *s = new_sim();
    tern_settings set;
    server_settings(&set);
    set.send_buffer = 64u << 20; /* only the connection's budget limits the queue here */
    tnet_node srv;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    static legit l;
    memset(&l, 0, sizeof(l));
    legit_start(s, &l, &srv);
    /* the server queues toward a peer that does not read: AGAIN at the budget, never past it */
    uint8_t msg[100];
    memset(msg, 1, sizeof(msg));
    TT_REQUIRE(tern_flow_send(l.node.conn, l.flow, sim_now(s), msg, sizeof(msg), -1) == TERN_OK);
    sim_run_until(s, sim_now(s) + 100 * MS);
    tern_conn *sc = g_echo.conn;
    TT_REQUIRE(sc != NULL);
    static uint8_t big[64 * 1024];
    int rc = TERN_OK, queued = 0;
    while ((rc = tern_flow_send(sc, g_echo.flow, sim_now(s), big, sizeof(big), -1)) == TERN_OK)
        queued++;
    TT_CHECK_EQ_INT(rc, TERN_ERR_AGAIN);
    size_t queued_mem = tern_conn_memory(sc);
    /* our own queue may take three quarters of the budget: the rest stays for the peer */
    TT_CHECK(tern_conn_memory(sc) <= set.conn_memory - set.conn_memory / 4);
    TT_CHECK(tern_conn_memory(sc) + 2 * sizeof(big) > set.conn_memory - set.conn_memory / 4);
    /* ... so the peer can still send us its messages while our queue is full */
    uint64_t got0 = srv.messages;
    for (int i = 0; i < 10; i++) {
        legit_tick(s, &l);
        sim_run_until(s, sim_now(s) + 20 * MS);
    }
    TT_CHECK_EQ_INT(l.node.closed, 0);
    TT_CHECK(srv.messages - got0 >= 9);
    static uint8_t huge[2u << 20];
    TT_CHECK_EQ_INT(tern_flow_send(sc, g_echo.flow, sim_now(s), huge, sizeof(huge), -1),
                    TERN_ERR_TOO_LARGE);
    printf("budget: sending side: %d messages of 64 KiB queued toward a peer, then AGAIN at %zu "
           "accounted bytes (conn_memory %llu, 3/4 for our queue)\n",
           queued, queued_mem, (unsigned long long)set.conn_memory);
    tern_conn_close(l.node.conn, sim_now(s), 0, "", 0);
    sim_run_until(s, sim_now(s) + 3 * S);
    tnet_node_free(&l.node, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

/* ---------------------------------------------------------------- accounting is exact */

/* Messages of every size path (one fragment, several delivered at once, a large one assembled
 * in order, datagrams), on a lossy link so fragments wait in the window: once the flows are
 * closed and reaped, both sides account exactly 0 bytes again (no drift that would one day
 * close a long-lived connection for a budget it does not use). */
static void test_accounting_returns_to_zero(void)
{
    sim *s = new_sim();
    tern_settings set;
    server_settings(&set);
    tnet_node srv, cli;
    tnet_node_init(&srv, s, &SA, 1, &set, 1);
    tern_addr ca;
    addr4(&ca, 200, 2, 40000);
    tnet_node_init(&cli, s, &ca, 0, NULL, 2);
    tnet_link(s, &SA, &ca, 10, 0.05, 2);
    tnet_connect(s, &cli, &srv, NULL);
    sim_run_until(s, 1 * S);
    TT_REQUIRE(cli.established && srv.established);
    tern_conn *sc = srv.conn, *cc = cli.conn;
    TT_CHECK_EQ_U64(tern_conn_memory(sc), 0);
    static uint8_t buf[400 * 1024];
    memset(buf, 3, sizeof(buf));
    const size_t sizes[] = {0, 1, 1000, 5000, 60000, 200000, 400000};
    uint64_t total = 0;
    for (int round = 0; round < 2; round++) {
        uint64_t f;
        tern_flow_config fc;
        tern_flow_config_default(&fc);
        fc.ordered = (uint8_t)(round == 0);
        TT_REQUIRE(tern_flow_open(cc, &fc, &f) == TERN_OK);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            int rc;
            while ((rc = tern_flow_send(cc, f, sim_now(s), buf, sizes[i], -1)) == TERN_ERR_AGAIN)
                sim_run_until(s, sim_now(s) + 10 * MS);
            TT_REQUIRE_MSG(rc == TERN_OK, "send %zu: %s", sizes[i], tern_strerror(rc));
            total += sizes[i];
            TT_CHECK(tern_conn_memory(sc) <= set.conn_memory);
        }
        for (int i = 0; i < 20; i++) tern_conn_send_datagram(cc, sim_now(s), buf, 100);
        for (int i = 0; i < 20; i++) tern_conn_send_datagram(sc, sim_now(s), buf, 100);
        TT_REQUIRE(tern_flow_close(cc, f) == TERN_OK);
        sim_run_until(s, sim_now(s) + 20 * S);
    }
    TT_CHECK_EQ_INT(srv.closed, 0);
    TT_CHECK_EQ_U64(srv.message_bytes, total);
    TT_CHECK_EQ_U64(srv.flows_closed, 2);
    printf("budget: %llu bytes in %d messages over a lossy link; accounted afterwards: server %zu, "
           "client %zu\n",
           (unsigned long long)total, (int)(2 * sizeof(sizes) / sizeof(sizes[0])),
           tern_conn_memory(sc), tern_conn_memory(cc));
    TT_CHECK_EQ_U64(tern_conn_memory(sc), 0);
    TT_CHECK_EQ_U64(tern_conn_memory(cc), 0);
    tern_conn_close(cc, sim_now(s), 0, "", 0);
    sim_run_until(s, sim_now(s) + 3 * S);
    tnet_node_free(&cli, s);
    tnet_node_free(&srv, s);
    sim_del(s);
}

static const tt_case cases[] = {
    TT_CASE(test_accounting_returns_to_zero),
    TT_CASE(test_h2_one_attacker),
    TT_CASE(test_h2_four_attackers),
    TT_CASE(test_near_max_memory_refuses_newcomers),
    TT_CASE(test_conns_per_ip),
    TT_CASE(test_send_side_budget_and_profile),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
