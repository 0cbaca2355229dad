/*
 * A limit on every rendezvous and relay resource (issue 12: H3, H4, M1, M2, M3, M4, M7), each
 * tried as an authenticated attacker would: real tern clients that completed the handshake with
 * fresh keys and send well-formed rendezvous messages straight onto their flow (tern_rdv_encode
 * + tern_flow_send, so no client-side limit applies). Each test asserts the bound (counts, the
 * server's accounted memory, bytes queued to one peer) and that a legitimate client is served
 * during the attack, and prints what it measured. The server runs tern_rdv_config_default's
 * public-server limits unless a test says otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/rdv_cli.h"
#include "tern/rendezvous.h"

#define MS (1000000ull)
#define S (1000000000ull)

/* ---------------------------------------------------------------- helpers */

static tern_rdv_msg offer_msg(const uint8_t *name, size_t len)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_OFFER);
    m.service = name, m.service_len = len;
    return m;
}

static void offer(rdv_cli *k, const char *svc)
{
    tern_rdv_msg m = offer_msg((const uint8_t *)svc, strlen(svc));
    rdv_cli_send(k, &m);
}

static tern_rdv_msg call_msg(const char *svc, uint64_t id, uint32_t timeout_ms,
                             const uint8_t *payload, size_t len)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_CALL);
    m.service = (const uint8_t *)svc, m.service_len = strlen(svc);
    m.method = (const uint8_t *)"m", m.method_len = 1;
    m.has_call_id = 1, m.call_id = id;
    if (timeout_ms) m.has_timeout = 1, m.timeout_ms = timeout_ms;
    m.payload = payload, m.payload_len = len, m.has_payload = 1;
    return m;
}

static tern_rdv_msg intro_msg(const rdv_cli *target)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    m.has_peer_id = 1;
    tern_peer_id(target->n.key.pub, m.peer_id);
    return m;
}

/* A 255-byte name that is distinct for each i. */
static void long_name(uint8_t name[TERN_RDV_MAX_NAME], const char *prefix, uint32_t i)
{
    memset(name, 'x', TERN_RDV_MAX_NAME);
    int n = snprintf((char *)name, TERN_RDV_MAX_NAME, "%s-%u-", prefix, i);
    if (n > 0 && n < TERN_RDV_MAX_NAME) name[n] = 'x';
}

static tern_rdv_msg join_msg(const uint8_t *name, size_t len)
{
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_JOIN);
    m.group = name, m.group_len = len;
    return m;
}

/* k asks to join n groups with distinct names of 255 bytes, "prefix-i-" then padding (whatever
 * the server refuses is counted there). */
static void join_long(rdv_cli *k, const char *prefix, uint32_t n)
{
    uint8_t name[TERN_RDV_MAX_NAME];
    for (uint32_t i = 0; i < n; i++) {
        long_name(name, prefix, i);
        tern_rdv_msg m = join_msg(name, sizeof(name));
        (void)rdv_cli_try(k, &m);
    }
}

/* Blocks everything the server sends to k from now on (a peer that never reads). */
static void silence(rdv_world *w, rdv_cli *k)
{
    sim_link *l = sim_link_lookup(w->s, &w->srv.addr, &k->n.addr);
    if (l == NULL) tnet_link(w->s, &w->srv.addr, &k->n.addr, 5, 0, 0);
    l = sim_link_lookup(w->s, &w->srv.addr, &k->n.addr);
    TT_REQUIRE(l != NULL);
    TT_REQUIRE(sim_link_blackhole(l, sim_now(w->s), UINT64_MAX) == 0);
}

/* ---------------------------------------------------------------- H3: services */

static void test_h3_offer_flood_bounded(void)
{
    enum { ATTACKERS = 3, OFFERS = 3000 };
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.max_services = 40; /* small, to reach the server-wide cap with three attackers */
    rdv_world w;
    rdv_world_init(&w, ATTACKERS + 2, &cfg, 1);
    rdv_cli *prov = &w.c[ATTACKERS], *caller = &w.c[ATTACKERS + 1];
    uint64_t mem0 = rdv_node_stats(&w.srv).mem_current;
    /* the first attacker floods alone: its own cap */
    uint8_t name[TERN_RDV_MAX_NAME];
    uint32_t sent = 0;
    for (uint32_t i = 0; i < OFFERS; i++) {
        long_name(name, "a0", i);
        tern_rdv_msg m = offer_msg(name, sizeof(name));
        if (rdv_cli_try(&w.c[0], &m) == TERN_OK) sent++;
        if (i % 500 == 499) tnet_run_ms(w.s, 50);
    }
    tnet_run_ms(w.s, 500);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  one attacker, %u OFFERs of 255-byte names: %llu services kept (max_services_per_peer "
           "%u), %llu refused, rendezvous memory +%llu bytes, its accounted state %llu bytes\n",
           sent, (unsigned long long)st.services, cfg.max_services_per_peer,
           (unsigned long long)st.limit_services, (unsigned long long)(st.mem_current - mem0),
           (unsigned long long)st.peer_state_max);
    TT_CHECK_EQ_U64(st.services, cfg.max_services_per_peer);
    TT_CHECK_EQ_U64(st.limit_services, sent - cfg.max_services_per_peer);
    TT_CHECK_EQ_U64(w.c[0].errors[TERN_RDV_E_LIMIT], sent - cfg.max_services_per_peer);
    TT_CHECK(st.mem_current - mem0 <= 16 * 1024);
    TT_CHECK(st.peer_state_max <= cfg.max_peer_state);
    /* all three: the server-wide cap (40) */
    for (uint32_t a = 1; a < ATTACKERS; a++)
        for (uint32_t i = 0; i < 100; i++) {
            long_name(name, a == 1 ? "a1" : "a2", i);
            tern_rdv_msg m = offer_msg(name, sizeof(name));
            (void)rdv_cli_try(&w.c[a], &m);
        }
    tnet_run_ms(w.s, 300);
    st = rdv_node_stats(&w.srv);
    TT_CHECK_EQ_U64(st.services, cfg.max_services);
    /* a legitimate provider is refused only while the server is full... */
    offer(prov, "legit");
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(prov->errors[TERN_RDV_E_LIMIT], 1);
    /* ...and is served as soon as an attacker's services go with it */
    tern_conn_close(w.c[2].n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 100);
    prov->auto_reply = 1;
    offer(prov, "legit");
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(prov->got[TERN_RDV_OFFERED], 1);
    tern_rdv_msg c = call_msg("legit", 5, 0, (const uint8_t *)"hi", 2);
    rdv_cli_send(caller, &c);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(caller->got[TERN_RDV_REPLY], 1);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).tx_failed, 0);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- H4: groups */

/* Runs the silent-members attack with cfg; returns the server endpoint's peak memory growth. */
static size_t silent_members(const tern_rdv_config *cfg, tern_rdv_stats *out, uint64_t *reader_got);

static void test_h4_silent_members_hold_bounded_queues(void)
{
    enum { SILENT = 20, MSGS = 900, SIZE = 4000 };
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    tern_rdv_stats st, st0;
    uint64_t got, got0;
    size_t peak = silent_members(&cfg, &st, &got);
    cfg.max_queue_bytes = 0; /* as before the limit */
    size_t peak0 = silent_members(&cfg, &st0, &got0);
    printf("  %d silent members, %llu group messages of %d bytes: most queued to one member %llu "
           "bytes (max_queue_bytes 262144), %llu events not queued, %llu members closed; server "
           "endpoint memory +%zu bytes at most (%zu per silent member); without the limit "
           "+%zu bytes (%.1fx)\n",
           SILENT, (unsigned long long)st.group_msgs, SIZE, (unsigned long long)st.queue_max,
           (unsigned long long)st.queue_dropped, (unsigned long long)st.slow_closed, peak,
           peak / SILENT, peak0, (double)peak0 / (double)peak);
    TT_CHECK(st.queue_max <= 256 * 1024);
    TT_CHECK(st.queue_dropped > 0);
    /* silent for SLOW_CLOSE_NS (20 s) of dropped events: closed, with a reason */
    TT_CHECK_EQ_U64(st.slow_closed, SILENT);
    TT_CHECK_EQ_U64(st.peers, 2);
    /* the reader got every message */
    TT_CHECK_EQ_U64(got, st.group_msgs);
    TT_CHECK_EQ_U64(st.rate_dropped_peer, 0);
    TT_CHECK(peak < (size_t)SILENT * 1024 * 1024);
    TT_CHECK(peak0 > 3 * peak);
    TT_CHECK_EQ_U64(st0.slow_closed, 0);
    (void)got0;
}

static size_t silent_members(const tern_rdv_config *cfg, tern_rdv_stats *out, uint64_t *reader_got)
{
    enum { SILENT = 20, MSGS = 900, SIZE = 4000 };
    rdv_world w;
    rdv_world_init(&w, SILENT + 2, cfg, 1);
    rdv_cli *sender = &w.c[SILENT], *reader = &w.c[SILENT + 1];
    for (uint32_t i = 0; i < SILENT + 2; i++) rdv_cli_group(&w.c[i], TERN_RDV_JOIN, "room", NULL, 0);
    tnet_run_ms(w.s, 100);
    TT_REQUIRE(rdv_node_stats(&w.srv).joins == SILENT + 2);
    for (uint32_t i = 0; i < SILENT; i++) silence(&w, &w.c[i]);
    size_t ep0 = w.srv.mem.current;
    /* 90 messages of 4000 bytes a second for 10 s (under the sender's 100/s): 3.6 MB to each
     * member, seven times max_queue_bytes */
    uint8_t payload[SIZE];
    memset(payload, 7, sizeof(payload));
    size_t ep_peak = 0;
    for (uint32_t k = 0; k < MSGS; k++) {
        rdv_cli_group(sender, TERN_RDV_GROUP_MSG, "room", payload, sizeof(payload));
        tnet_run_ms(w.s, 11);
        if (w.srv.mem.current > ep_peak) ep_peak = w.srv.mem.current;
    }
    /* then one a second for 13 s more: the silent members have dropped events for 20 s */
    for (uint32_t k = 0; k < 13; k++) {
        rdv_cli_group(sender, TERN_RDV_GROUP_MSG, "room", payload, sizeof(payload));
        tnet_run_ms(w.s, 1000);
        if (w.srv.mem.current > ep_peak) ep_peak = w.srv.mem.current;
    }
    *out = rdv_node_stats(&w.srv);
    *reader_got = reader->got[TERN_RDV_GROUP_MSG];
    rdv_world_free(&w);
    return ep_peak - ep0;
}

static void test_h4_join_leave_loop_bounded_presence(void)
{
    enum { MEMBERS = 50, LOOPS = 2000 };
    rdv_world w;
    rdv_world_init(&w, MEMBERS + 1, NULL, 1);
    rdv_cli *att = &w.c[MEMBERS];
    for (uint32_t i = 0; i < MEMBERS; i++) rdv_cli_group(&w.c[i], TERN_RDV_JOIN, "lobby", NULL, 0);
    tnet_run_ms(w.s, 200);
    uint64_t pres0 = 0;
    for (uint32_t i = 0; i < MEMBERS; i++) pres0 += w.c[i].presence_join + w.c[i].presence_leave;
    /* the attacker joins and leaves as fast as it can for 5 s */
    uint64_t t0 = sim_now(w.s);
    for (uint32_t k = 0; k < LOOPS; k++) {
        rdv_cli_group(att, TERN_RDV_JOIN, "lobby", NULL, 0);
        rdv_cli_group(att, TERN_RDV_LEAVE, "lobby", NULL, 0);
        if (k % 8 == 7) tnet_run_ms(w.s, 20);
    }
    const uint8_t hi[] = {42};
    rdv_cli_group(&w.c[0], TERN_RDV_GROUP_MSG, "lobby", hi, 1);
    tnet_run_ms(w.s, 500);
    double secs = (double)(sim_now(w.s) - t0) / S;
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    uint64_t pres = 0;
    for (uint32_t i = 0; i < MEMBERS; i++) pres += w.c[i].presence_join + w.c[i].presence_leave;
    pres -= pres0;
    printf("  %d JOIN+LEAVE pairs in %.1f s beside %d members: %llu refused (join_rate 10/s), "
           "%llu presence events sent to %d members (%llu messages), %llu presence events "
           "suppressed\n", LOOPS, secs, MEMBERS, (unsigned long long)st.rate_dropped_join,
           (unsigned long long)(pres / MEMBERS), MEMBERS, (unsigned long long)pres,
           (unsigned long long)st.presence_dropped);
    /* JOIN+LEAVE: 10/s with a burst of 20 for the attacker; each member hears at most that */
    uint64_t bound = (uint64_t)(20 + 10 * secs + 1);
    TT_CHECK(pres / MEMBERS <= bound);
    /* each request was let through (<= bound), refused by the rate, or a LEAVE outside */
    uint64_t passed = 2 * LOOPS - st.rate_dropped_join - att->errors[TERN_RDV_E_NOT_MEMBER];
    TT_CHECK_MSG(passed <= bound, "%llu JOIN/LEAVE let through", (unsigned long long)passed);
    TT_CHECK(att->errors[TERN_RDV_E_RATE_LIMITED] == st.rate_dropped_join);
    /* the group still works for the members */
    for (uint32_t i = 1; i < MEMBERS; i++) TT_CHECK_EQ_U64(w.c[i].group_seen[42], 1);
    /* presence in a group over presence_max_members is not sent at all */
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.presence_max_members = 10;
    rdv_world w2;
    rdv_world_init(&w2, 14, &cfg, 1);
    for (uint32_t i = 0; i < 14; i++) {
        rdv_cli_group(&w2.c[i], TERN_RDV_JOIN, "big", NULL, 0);
        tnet_run_ms(w2.s, 20);
    }
    /* members 1..10 joined a group of at most 10: announced; 11..13 joined a larger one: not */
    TT_CHECK_EQ_U64(w2.c[0].presence_join, 9);
    TT_CHECK_EQ_U64(rdv_node_stats(&w2.srv).presence_dropped, 4);
    TT_CHECK_EQ_U64(w2.c[13].last[TERN_RDV_JOINED].count, 14);
    rdv_world_free(&w2);
    rdv_world_free(&w);
}

static void test_group_limits(void)
{
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.max_groups = 100;
    cfg.max_group_members = 3;
    cfg.join_rate = 0; /* no JOIN rate here: the counts are the subject */
    rdv_world w;
    rdv_world_init(&w, 6, &cfg, 1);
    rdv_cli *att = &w.c[0];
    /* members per group: the fourth joiner of "small" is refused */
    for (uint32_t i = 1; i < 6; i++) rdv_cli_group(&w.c[i], TERN_RDV_JOIN, "small", NULL, 0);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(w.c[4].errors[TERN_RDV_E_LIMIT] + w.c[5].errors[TERN_RDV_E_LIMIT], 2);
    TT_CHECK_EQ_U64(w.c[1].got[TERN_RDV_JOINED], 1);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).limit_groups, 2);
    join_long(att, "g", 300);
    tnet_run_ms(w.s, 500);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  one peer, 300 JOINs of 255-byte names: %llu groups of its own "
           "(max_groups_per_peer %u), accounted state %llu bytes (max_peer_state %llu)\n",
           (unsigned long long)(st.groups - 1), cfg.max_groups_per_peer,
           (unsigned long long)st.peer_state_max, (unsigned long long)cfg.max_peer_state);
    TT_CHECK_EQ_U64(st.groups, 1 + cfg.max_groups_per_peer);
    TT_CHECK_EQ_U64(st.limit_groups, 2 + 300 - cfg.max_groups_per_peer);
    TT_CHECK(st.peer_state_max <= cfg.max_peer_state);
    /* a second peer reaches the server-wide 100 */
    join_long(&w.c[4], "h", 64);
    tnet_run_ms(w.s, 300);
    TT_CHECK_EQ_U64(rdv_node_stats(&w.srv).groups, 100);
    /* existing groups keep working: a message in "small" reaches its members */
    const uint8_t hi[] = {3};
    rdv_cli_group(&w.c[1], TERN_RDV_GROUP_MSG, "small", hi, 1);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(w.c[2].group_seen[3], 1);
    TT_CHECK_EQ_U64(w.c[3].group_seen[3], 1);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- M1: introductions */

static void test_m1_intro_flood_rate_limited_legit_served(void)
{
    enum { ATT = 3, EACH = 300 };
    rdv_world w;
    rdv_world_init(&w, 2, NULL, 1);
    rdv_cli *target = &w.c[0], *legit = &w.c[1];
    tern_peer_id(legit->n.key.pub, target->watch_id);
    /* three attacker connections (fresh keys) from one IP, different ports */
    rdv_cli att[ATT];
    for (uint32_t i = 0; i < ATT; i++) {
        tern_addr a;
        tern_addr_ipv4(&a, 198, 51, 100, 66, (uint16_t)(50000 + i));
        rdv_cli_start_at(&att[i], w.s, &w.srv, &a, 500 + i, NULL);
    }
    tnet_run_ms(w.s, 200);
    for (uint32_t i = 0; i < ATT; i++) rdv_cli_register(&att[i]);
    tnet_run_ms(w.s, 50);
    uint64_t t0 = sim_now(w.s);
    tern_rdv_msg m = intro_msg(target);
    for (uint32_t k = 0; k < EACH; k++) {
        for (uint32_t i = 0; i < ATT; i++) (void)rdv_cli_try(&att[i], &m);
        if (k % 10 == 9) tnet_run_ms(w.s, 10);
        if (k == EACH / 2) { /* in the middle of the flood, a legitimate introduction */
            tern_rdv_msg l = intro_msg(target);
            rdv_cli_send(legit, &l);
        }
    }
    tnet_run_ms(w.s, 100);
    double secs = (double)(sim_now(w.s) - t0) / S;
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  %d attackers from one IP, %d INTRODUCEs each to one target in %.1f s: target told "
           "%llu times (intro_target_rate 2/s, burst 10, per requester IP), %llu refused per "
           "requester, %llu per target\n", ATT, EACH, secs,
           (unsigned long long)target->got[TERN_RDV_INTRODUCED],
           (unsigned long long)st.intro_limited_peer, (unsigned long long)st.intro_limited_target);
    /* the attackers' IP: 10 + 2/s; the legitimate requester: 1 */
    TT_CHECK(target->got[TERN_RDV_INTRODUCED] <= 10 + (uint64_t)(2 * secs) + 1 + 1);
    TT_CHECK(st.intro_limited_target > 0 && st.intro_limited_peer > 0);
    TT_CHECK_EQ_U64(legit->got[TERN_RDV_PEER_INFO], 1);
    TT_CHECK_EQ_U64(target->watch_hits, 1); /* the target was told about the legitimate one */
    uint64_t errs = 0;
    for (uint32_t i = 0; i < ATT; i++) errs += att[i].errors[TERN_RDV_E_RATE_LIMITED];
    TT_CHECK_EQ_U64(errs, st.intro_limited_peer + st.intro_limited_target);
    for (uint32_t i = 0; i < ATT; i++) rdv_cli_free(&att[i]);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- M2: LOCAL candidates */

static void test_m2_local_candidates_filtered(void)
{
    tern_addr a, obs;
    tern_addr_ipv4(&obs, 203, 0, 113, 9, 4000);
    struct { const char *addr; int ok; } v[] = {
        {"10.1.2.3:5000", 1}, {"172.16.0.1:5000", 1}, {"172.31.255.1:5000", 1},
        {"172.32.0.1:5000", 0}, {"192.168.7.7:5000", 1}, {"100.64.0.1:5000", 1},
        {"100.128.0.1:5000", 0}, {"169.254.3.4:5000", 1}, {"8.8.8.8:53", 0},
        {"203.0.113.5:80", 0}, {"127.0.0.1:5000", 0}, {"0.0.0.0:5000", 0},
        {"224.0.0.1:5000", 0}, {"10.0.0.1:0", 0}, {"[fe80::1]:5000", 1}, {"[fd12::1]:5000", 1},
        {"[2001:db8::1]:5000", 0}, {"[::1]:5000", 0}, {"[::ffff:10.0.0.1]:5000", 1},
        {"[::ffff:8.8.8.8]:5000", 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        TT_REQUIRE(tern_addr_parse(&a, v[i].addr) == TERN_OK);
        TT_CHECK_MSG(tern_rdv_local_cand_ok(&a, &obs) == v[i].ok, "%s", v[i].addr);
    }
    /* loopback only for a peer the server sees on loopback (peers and server on one host) */
    tern_addr lo, lo_obs;
    tern_addr_ipv4(&lo, 127, 0, 0, 1, 5000);
    tern_addr_ipv4(&lo_obs, 127, 0, 0, 1, 40000);
    TT_CHECK(tern_rdv_local_cand_ok(&lo, &lo_obs));
    TT_CHECK(!tern_rdv_local_cand_ok(&lo, NULL));

    /* on the server: a REGISTER naming somebody else's public addresses as LOCAL */
    rdv_world w;
    rdv_world_init(&w, 2, NULL, 0);
    rdv_cli *att = &w.c[0], *legit = &w.c[1];
    rdv_cli_register(legit);
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    const char *cands[] = {"8.8.8.8:53", "203.0.113.5:80", "10.1.1.1:5000", "192.168.0.2:5000",
                           "[2001:db8::1]:443", "172.16.5.5:1", "100.64.0.1:1", "169.254.1.1:1"};
    m.n_cands = 8;
    for (size_t i = 0; i < 8; i++) {
        m.cands[i].kind = TERN_RDV_CAND_LOCAL;
        TT_REQUIRE(tern_addr_parse(&m.cands[i].addr, cands[i]) == TERN_OK);
    }
    rdv_cli_send(att, &m);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(att->got[TERN_RDV_REGISTERED] == 1);
    tern_rdv_msg in = intro_msg(att);
    rdv_cli_send(legit, &in);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(legit->got[TERN_RDV_PEER_INFO] == 1);
    const tern_rdv_msg *pi = &legit->last[TERN_RDV_PEER_INFO];
    size_t n_local = 0;
    for (size_t i = 0; i < pi->n_cands; i++) {
        if (pi->cands[i].kind != TERN_RDV_CAND_LOCAL) continue;
        n_local++;
        TT_CHECK(tern_rdv_local_cand_ok(&pi->cands[i].addr, &att->n.addr));
    }
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  REGISTER with 8 LOCAL candidates (3 public): %zu kept (max_local_cands 4), %llu "
           "dropped\n", n_local, (unsigned long long)st.local_cands_dropped);
    TT_CHECK_EQ_U64(n_local, 4);
    TT_CHECK_EQ_U64(st.local_cands_dropped, 4);
    TT_CHECK_EQ_U64(att->got[TERN_RDV_INTRODUCED], 1);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- M3: relay sessions */

static void test_m3_relay_sessions_bounded_target_not_locked(void)
{
    enum { ATT = 24 };
    tt_mem lmem;
    tt_mem_init(&lmem);
    tt_rng lrng;
    tt_rng_seed(&lrng, tt_seed() ^ 0x3e1a);
    tern_relay_config lc;
    tern_relay_config_default(&lc);
    lc.mem = &lmem.mem;
    lc.rand = tt_rand_fill;
    lc.rand_user = &lrng;
    lc.max_per_addr = 16; /* small, so that 24 attackers reach it */
    tern_relay *relay = NULL;
    TT_REQUIRE(tern_relay_new(&lc, &relay) == TERN_OK);
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.has_relay = 1;
    tern_addr_ipv4(&cfg.relay, 0, 0, 0, 0, 4433);
    cfg.relay_sessions = relay;
    cfg.max_relay_per_peer = 8;
    cfg.intro_target_rate = 0; /* the relay's own limits are the subject here */
    rdv_world w;
    rdv_world_init(&w, ATT + 2 + 20, &cfg, 1);
    w.srv.relay = relay;
    rdv_cli *target = &w.c[0], *legit = &w.c[1];
    /* 24 attackers each open a session with the target */
    for (uint32_t i = 0; i < ATT; i++) {
        tern_rdv_msg m = intro_msg(target);
        rdv_cli_send(&w.c[2 + i], &m);
        tnet_run_ms(w.s, 5);
    }
    tnet_run_ms(w.s, 100);
    tern_relay_stats rs;
    tern_relay_get_stats(relay, &rs);
    TT_CHECK_EQ_U64(rs.sessions, 16);
    TT_CHECK_EQ_U64(rs.evicted, ATT - 16);
    /* the target is not locked out: a legitimate introduction gets its session */
    tern_rdv_msg m = intro_msg(target);
    rdv_cli_send(legit, &m);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(legit->got[TERN_RDV_PEER_INFO] == 1);
    TT_CHECK(legit->last[TERN_RDV_PEER_INFO].has_channel);
    TT_CHECK(target->last[TERN_RDV_INTRODUCED].has_channel);
    /* the session works: legit -> target through the relay */
    uint8_t d[64] = {TERN_RELAY_TYPE};
    memcpy(d + 1, legit->last[TERN_RDV_PEER_INFO].channel, TERN_RELAY_CHANNEL_LEN);
    d[TERN_RELAY_HDR_LEN] = 0x40;
    tern_addr to;
    TT_CHECK_EQ_INT(tern_relay_forward(relay, sim_now(w.s), &legit->n.addr, d, sizeof(d), &to),
                    (int)sizeof(d));
    TT_CHECK(tern_addr_equal(&to, &target->n.addr));
    /* one requester: at most max_relay_per_peer sessions (the rest introduced without relay) */
    rdv_cli *greedy = &w.c[2];
    for (uint32_t i = 0; i < 20; i++) {
        tern_rdv_msg g = intro_msg(&w.c[ATT + 2 + i]);
        rdv_cli_send(greedy, &g);
        tnet_run_ms(w.s, 5);
    }
    tnet_run_ms(w.s, 100);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    /* greedy's session with the target was the first evicted: 8 of its 20 get one */
    TT_CHECK_EQ_U64(st.relay_refused_peer, 20 - 8);
    tern_relay_get_stats(relay, &rs);
    uint64_t live = rs.sessions;
    /* the peers that opened sessions leave: their sessions go with them */
    for (uint32_t i = 2; i < ATT + 2; i++)
        tern_conn_close(w.c[i].n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 200);
    tern_relay_get_stats(relay, &rs);
    st = rdv_node_stats(&w.srv);
    printf("  %d attackers opening sessions to one target (max_per_addr 16): %llu evicted, the "
           "legitimate introduction got its session; one requester: %llu of 20 without relay "
           "(max_relay_per_peer 8); %llu live sessions -> %llu after the attackers left "
           "(%llu closed with them)\n", ATT, (unsigned long long)(ATT - 16),
           (unsigned long long)st.relay_refused_peer, (unsigned long long)live,
           (unsigned long long)rs.sessions, (unsigned long long)st.relay_closed);
    TT_CHECK_EQ_U64(rs.sessions, 1); /* legit <-> target */
    TT_CHECK(st.relay_closed >= live - 1);
    rdv_world_free(&w);
    tern_relay_del(relay);
    tt_mem_check_clean(&lmem, "relay");
}

/* ---------------------------------------------------------------- M7: calls */

static void test_m7_calls_bounded_legit_served(void)
{
    enum { ATT = 4, EACH = 200 };
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.max_calls_per_provider = 100;
    rdv_world w;
    rdv_world_init(&w, ATT + 3, &cfg, 1);
    rdv_cli *sink = &w.c[ATT], *echo = &w.c[ATT + 1], *legit = &w.c[ATT + 2];
    offer(sink, "sink"); /* never replies */
    echo->auto_reply = 1;
    offer(echo, "echo");
    tnet_run_ms(w.s, 50);
    uint64_t mem0 = rdv_node_stats(&w.srv).mem_current;
    const uint8_t pl[8] = {0};
    for (uint32_t k = 0; k < EACH; k++)
        for (uint32_t a = 0; a < ATT; a++) {
            tern_rdv_msg m = call_msg(a < 2 ? "sink" : "echo", k, 60000, pl, sizeof(pl));
            if (a >= 2) m.service = (const uint8_t *)"sink", m.service_len = 4;
            (void)rdv_cli_try(&w.c[a], &m);
        }
    tnet_run_ms(w.s, 200);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  %d callers x %d calls (60 s timeout) to a provider that never answers: %llu in "
           "flight (max_calls_per_peer %u, max_calls_per_provider 100), %llu refused, rendezvous "
           "memory +%llu bytes; server-wide max_calls %u needs %u connections\n",
           ATT, EACH, (unsigned long long)st.calls_pending, cfg.max_calls_per_peer,
           (unsigned long long)st.limit_calls, (unsigned long long)(st.mem_current - mem0),
           cfg.max_calls, cfg.max_calls / cfg.max_calls_per_peer);
    TT_CHECK_EQ_U64(st.calls_pending, 100);
    TT_CHECK_EQ_U64(st.limit_calls, (uint64_t)ATT * EACH - 100);
    TT_CHECK(cfg.max_calls_per_peer < 256 && cfg.max_calls / cfg.max_calls_per_peer >= 10000);
    /* the per-caller limit alone (another provider, no provider limit reached) */
    uint64_t lim0 = w.c[0].errors[TERN_RDV_E_LIMIT];
    tern_rdv_msg x;
    for (uint32_t k = 0; k < 100; k++) {
        x = call_msg("echo", 1000 + k, 60000, pl, sizeof(pl));
        (void)rdv_cli_try(&w.c[0], &x);
    }
    /* a legitimate call is answered during all this */
    x = call_msg("echo", 7, 0, (const uint8_t *)"ping", 4);
    rdv_cli_send(legit, &x);
    tnet_run_ms(w.s, 100);
    TT_CHECK_EQ_U64(legit->got[TERN_RDV_REPLY], 1);
    TT_CHECK_EQ_U64(legit->last[TERN_RDV_REPLY].call_id, 7);
    /* attacker 0 (some calls to sink in flight) sent 100 echo calls at once: each was answered
     * or refused, and never more than 64 in flight */
    TT_CHECK_EQ_U64(w.c[0].got[TERN_RDV_REPLY] + w.c[0].errors[TERN_RDV_E_LIMIT] - lim0, 100);
    uint64_t in_flight = EACH - lim0; /* its calls to sink */
    TT_CHECK_MSG(w.c[0].got[TERN_RDV_REPLY] >= 64 - in_flight, "%llu replies, %llu in flight",
                 (unsigned long long)w.c[0].got[TERN_RDV_REPLY], (unsigned long long)in_flight);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- per-peer budgets */

/* One anonymous connection takes everything it may: LOCAL candidates, 64 groups and 16 services
 * with 255-byte names, 64 calls in flight; its accounted state stays under max_peer_state and
 * the server's memory grows by about that, far below the 1 MiB per connection. */
static void test_peer_state_budget(void)
{
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.join_rate = 0;
    rdv_world w;
    rdv_world_init(&w, 2, &cfg, 1);
    rdv_cli *att = &w.c[0], *prov = &w.c[1];
    offer(prov, "slow");
    tnet_run_ms(w.s, 50);
    uint64_t mem0 = rdv_node_stats(&w.srv).mem_current;
    uint8_t name[TERN_RDV_MAX_NAME];
    for (uint32_t i = 0; i < 100; i++) {
        long_name(name, "grp", i);
        tern_rdv_msg m = join_msg(name, sizeof(name));
        (void)rdv_cli_try(att, &m);
        long_name(name, "svc", i);
        m = offer_msg(name, sizeof(name));
        (void)rdv_cli_try(att, &m);
        m = call_msg("slow", i, 60000, (const uint8_t *)"x", 1);
        (void)rdv_cli_try(att, &m);
    }
    tnet_run_ms(w.s, 300);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  one connection, everything it may hold: accounted %llu bytes (max_peer_state %llu), "
           "rendezvous memory +%llu bytes\n", (unsigned long long)st.peer_state_max,
           (unsigned long long)cfg.max_peer_state, (unsigned long long)(st.mem_current - mem0));
    TT_CHECK(st.peer_state_max <= cfg.max_peer_state);
    TT_CHECK(st.mem_current - mem0 <= 2 * cfg.max_peer_state);
    TT_CHECK_EQ_U64(st.calls_pending, cfg.max_calls_per_peer);
    /* a smaller budget refuses the rest, counted */
    tern_rdv_config small = cfg;
    small.max_peer_state = 8 * 1024;
    rdv_world w2;
    rdv_world_init(&w2, 1, &small, 1);
    join_long(&w2.c[0], "grp", 64);
    tnet_run_ms(w2.s, 300);
    tern_rdv_stats s2 = rdv_node_stats(&w2.srv);
    TT_CHECK(s2.limit_peer_state > 0);
    TT_CHECK(s2.peer_state_max <= small.max_peer_state);
    TT_CHECK(s2.groups < 64);
    rdv_world_free(&w2);
    rdv_world_free(&w);

    /* the server-wide memory cap: near it new state and new connections are refused, the
     * peers already there keep being served */
    tern_rdv_config probe;
    tern_rdv_config_default(&probe);
    tern_rdv_server *ps = NULL;
    TT_REQUIRE(tern_rdv_server_new(&probe, &ps) == TERN_OK);
    tern_rdv_stats pst;
    tern_rdv_server_get_stats(ps, &pst);
    tern_rdv_server_del(ps);
    tern_rdv_config capped = cfg;
    capped.max_mem = pst.mem_current + 8 * 1024;
    rdv_world w3;
    rdv_world_init(&w3, 3, &capped, 1);
    rdv_cli_group(&w3.c[0], TERN_RDV_JOIN, "g", NULL, 0);
    rdv_cli_group(&w3.c[1], TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w3.s, 50);
    join_long(&w3.c[2], "fill", 64);
    tnet_run_ms(w3.s, 300);
    rdv_cli late[8];
    for (uint32_t i = 0; i < 8; i++) {
        tern_addr at;
        tern_addr_ipv4(&at, 198, 51, 100, (uint8_t)(20 + i), 40000);
        rdv_cli_start_at(&late[i], w3.s, &w3.srv, &at, 700 + i, NULL);
    }
    tnet_run_ms(w3.s, 500);
    const uint8_t hi[] = {9};
    rdv_cli_group(&w3.c[0], TERN_RDV_GROUP_MSG, "g", hi, 1);
    tnet_run_ms(w3.s, 50);
    tern_rdv_stats s3 = rdv_node_stats(&w3.srv);
    printf("  max_mem %llu bytes: memory %llu, %llu requests and connections refused, %d new "
           "connections refused\n", (unsigned long long)capped.max_mem,
           (unsigned long long)s3.mem_current, (unsigned long long)s3.limit_mem, w3.srv.refused);
    TT_CHECK(s3.mem_current <= capped.max_mem);
    TT_CHECK(s3.limit_mem > 3);
    /* what was left under the cap holds a few peer records at most; the rest are refused */
    TT_CHECK(w3.srv.refused >= 5);
    TT_CHECK_EQ_U64(s3.peers, 3 + 8 - (uint64_t)w3.srv.refused);
    TT_CHECK_EQ_U64(w3.c[1].group_seen[9], 1);
    for (uint32_t i = 0; i < 8; i++) rdv_cli_free(&late[i]);
    rdv_world_free(&w3);
}

/* A peer that asks and never reads the answers is closed once max_queue_bytes is queued to it. */
static void test_unread_responses_close_the_peer(void)
{
    rdv_world w;
    rdv_world_init(&w, 2, NULL, 1);
    rdv_cli *a = &w.c[0], *b = &w.c[1];
    /* the attacker advertises a flow window of 2 fragments and pauses the server's flow after
     * the first message: it acknowledges packets (its requests keep coming) but reads nothing,
     * so flow control holds the server's answers in the server's queue */
    rdv_cli attacker, *att = &attacker;
    tern_settings ts;
    tern_settings_default(&ts);
    ts.flow_window = 2;
    tern_addr at;
    tern_addr_ipv4(&at, 198, 51, 100, 7, 40000);
    rdv_cli_start_at(att, w.s, &w.srv, &at, 900, &ts);
    tnet_run_ms(w.s, 200);
    TT_REQUIRE(att->n.established);
    rdv_cli_register(att);
    tnet_run_ms(w.s, 50);
    TT_REQUIRE(att->got[TERN_RDV_REGISTERED] == 1);
    rdv_cli_group(a, TERN_RDV_JOIN, "g", NULL, 0);
    rdv_cli_group(b, TERN_RDV_JOIN, "g", NULL, 0);
    tnet_run_ms(w.s, 50);
    att->pause_rx = 1;
    uint8_t name[TERN_RDV_MAX_NAME];
    long_name(name, "nope", 0);
    const uint8_t hi[] = {1};
    /* GROUP_MSG to a group it is not in: ERROR(NOT_MEMBER) echoing a 255-byte name each */
    for (uint32_t i = 0; i < 5000; i++) {
        tern_rdv_msg m;
        tern_rdv_msg_init(&m, TERN_RDV_GROUP_MSG);
        m.group = name, m.group_len = sizeof(name);
        m.payload = hi, m.payload_len = 1, m.has_payload = 1;
        if (rdv_cli_try(att, &m) != TERN_OK) break;
        if (i % 100 == 99) tnet_run_ms(w.s, 5);
    }
    tnet_run_ms(w.s, 500);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    printf("  a peer that never reads its answers: closed after %llu bytes queued to it "
           "(max_queue_bytes 262144, answers up to 1.25x); slow_closed %llu\n", (unsigned long long)st.queue_max,
           (unsigned long long)st.slow_closed);
    TT_CHECK_EQ_U64(st.slow_closed, 1);
    TT_CHECK(st.queue_max <= 320 * 1024); /* a response may use 1.25 x max_queue_bytes */
    TT_CHECK(st.queue_max > 256 * 1024);
    TT_CHECK_EQ_U64(st.peers, 2);
    TT_CHECK(att->n.closed == 1 || att->n.closed == 0); /* its side may not have heard yet */
    const uint8_t yo[] = {2};
    rdv_cli_group(a, TERN_RDV_GROUP_MSG, "g", yo, 1);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(b->group_seen[2], 1);
    rdv_cli_free(att);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- M4: tokens */

static void test_m4_tokens_required_no_squatting(void)
{
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.has_secret = 1;
    memset(cfg.secret, 0x5c, sizeof(cfg.secret));
    cfg.require_register_token = cfg.require_join_token = cfg.require_offer_token = 1;
    cfg.unix_offset_s = 1700000000;
    uint64_t now_unix = 1700000000;
    rdv_world w;
    rdv_world_init(&w, 2, &cfg, 0);
    rdv_cli *att = &w.c[0], *legit = &w.c[1];
    /* no token: not registered, so nothing else either */
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    rdv_cli_send(att, &m);
    rdv_cli_group(att, TERN_RDV_JOIN, "vip", NULL, 0);
    offer(att, "bank");
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(att->errors[TERN_RDV_E_TOKEN_REQUIRED], 1);
    TT_CHECK_EQ_U64(att->errors[TERN_RDV_E_NOT_REGISTERED], 2);
    /* registered with its own token (say the operator lets anyone register), it still cannot
     * join or offer without theirs */
    uint8_t aid[32];
    tern_peer_id(att->n.key.pub, aid);
    m.has_token = 1;
    TT_REQUIRE(tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_REGISTER, aid, 32, now_unix + 60,
                                   m.token) == TERN_OK);
    rdv_cli_send(att, &m);
    rdv_cli_group(att, TERN_RDV_JOIN, "vip", NULL, 0);
    offer(att, "bank");
    tern_rdv_msg o = offer_msg((const uint8_t *)"bank", 4);
    o.has_token = 1; /* a token for another service */
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_OFFER, (const uint8_t *)"bans", 4,
                        now_unix + 60, o.token);
    rdv_cli_send(att, &o);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(att->got[TERN_RDV_REGISTERED], 1);
    TT_CHECK_EQ_U64(att->errors[TERN_RDV_E_TOKEN_REQUIRED], 3);
    TT_CHECK_EQ_U64(att->errors[TERN_RDV_E_TOKEN_FORGED], 1);
    TT_CHECK_EQ_U64(att->got[TERN_RDV_JOINED] + att->got[TERN_RDV_OFFERED], 0);
    /* the legitimate peer with its tokens: the name is its own */
    uint8_t lid[32];
    tern_peer_id(legit->n.key.pub, lid);
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_REGISTER, lid, 32, now_unix + 60, m.token);
    rdv_cli_send(legit, &m);
    tern_rdv_token_make(cfg.secret, TERN_RDV_TOKEN_OFFER, (const uint8_t *)"bank", 4,
                        now_unix + 60, o.token);
    rdv_cli_send(legit, &o);
    tnet_run_ms(w.s, 50);
    TT_CHECK_EQ_U64(legit->got[TERN_RDV_OFFERED], 1);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    TT_CHECK_EQ_U64(st.services, 1);
    TT_CHECK_EQ_U64(st.groups, 0);
    TT_CHECK_EQ_U64(st.token_rejected, 4);
    rdv_world_free(&w);
}

/* ---------------------------------------------------------------- churn */

/* Random well-formed requests from 30 peers (a third of them never reading, with tiny budgets so
 * that every limit and every close path runs), peers leaving and new ones coming, with a relay:
 * nothing crashes (ASan/UBSan builds), and once every peer is gone the rendezvous server and the
 * relay hold exactly what they held empty. */
static void test_random_churn_returns_memory(void)
{
    enum { N = 30, ROUNDS = 3000 };
    tt_mem lmem;
    tt_mem_init(&lmem);
    tt_rng rng;
    tt_rng_seed(&rng, tt_seed() ^ 0xc4u);
    tern_relay_config lc;
    tern_relay_config_default(&lc);
    lc.mem = &lmem.mem;
    lc.rand = tt_rand_fill;
    lc.rand_user = &rng;
    lc.max_per_addr = 4;
    lc.max_sessions = 40;
    tern_relay *relay = NULL;
    TT_REQUIRE(tern_relay_new(&lc, &relay) == TERN_OK);
    size_t relay_empty = lmem.current;
    tern_rdv_config cfg;
    tern_rdv_config_default(&cfg);
    cfg.has_relay = 1;
    tern_addr_ipv4(&cfg.relay, 0, 0, 0, 0, 4433);
    cfg.relay_sessions = relay;
    cfg.max_relay_per_peer = 3;
    cfg.max_queue_bytes = 16 * 1024;
    cfg.max_peer_state = 6 * 1024;
    cfg.max_services_per_peer = 3;
    cfg.max_groups_per_peer = 6;
    cfg.max_group_members = 12;
    cfg.max_calls_per_peer = 5;
    cfg.max_calls_per_provider = 8;
    cfg.default_timeout_ms = 300;
    rdv_world w;
    rdv_world_init(&w, 0, &cfg, 0);
    w.srv.relay = relay;
    rdv_cli *c = calloc(N, sizeof(*c));
    TT_REQUIRE(c != NULL);
    tern_settings slow;
    tern_settings_default(&slow);
    slow.flow_window = 2;
    uint32_t gen = 0;
    for (uint32_t i = 0; i < N; i++) {
        tern_addr a;
        tern_addr_ipv4(&a, 10, 50, (uint8_t)(i % 3), (uint8_t)i, 40000);
        rdv_cli_start_at(&c[i], w.s, &w.srv, &a, 1000 + gen++, i % 3 == 0 ? &slow : NULL);
    }
    tnet_run_ms(w.s, 300);
    for (uint32_t i = 0; i < N; i++) {
        rdv_cli_register(&c[i]);
        c[i].pause_rx = i % 3 == 0;
    }
    tnet_run_ms(w.s, 50);
    static const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    uint8_t big[3000];
    memset(big, 0x61, sizeof(big));
    for (uint32_t r = 0; r < ROUNDS; r++) {
        uint32_t i = (uint32_t)tt_rng_below(&rng, N);
        rdv_cli *k = &c[i];
        if (!k->n.established || k->n.closed) {
            if (tt_rng_below(&rng, 20) == 0) { /* a new peer in its place */
                rdv_cli_free(k);
                tern_addr a;
                tern_addr_ipv4(&a, 10, 51, (uint8_t)(gen >> 8), (uint8_t)gen, 40000);
                rdv_cli_start_at(k, w.s, &w.srv, &a, 1000 + gen++, NULL);
            }
            continue;
        }
        const char *g = names[tt_rng_below(&rng, 8)];
        tern_rdv_msg m;
        switch (tt_rng_below(&rng, 10)) {
        case 0: rdv_cli_register(k); break;
        case 1:
            rdv_cli_group(k, TERN_RDV_JOIN, g, NULL, 0);
            break;
        case 2: rdv_cli_group(k, TERN_RDV_LEAVE, g, NULL, 0); break;
        case 3:
            /* GROUP_MSG of up to 3000 bytes */
            tern_rdv_msg_init(&m, TERN_RDV_GROUP_MSG);
            m.group = (const uint8_t *)g, m.group_len = 1;
            m.payload = big, m.payload_len = (size_t)tt_rng_below(&rng, sizeof(big)), m.has_payload = 1;
            (void)rdv_cli_try(k, &m);
            break;
        case 4:
            m = offer_msg((const uint8_t *)g, 1);
            (void)rdv_cli_try(k, &m);
            break;
        case 5:
            m = call_msg(g, r, (uint32_t)tt_rng_below(&rng, 500), big, 100);
            (void)rdv_cli_try(k, &m);
            break;
        case 6:
            tern_rdv_msg_init(&m, TERN_RDV_REPLY);
            m.has_call_id = 1, m.call_id = tt_rng_below(&rng, r + 2);
            m.has_status = 1, m.payload = big, m.payload_len = 10, m.has_payload = 1;
            (void)rdv_cli_try(k, &m);
            break;
        case 7:
        case 8:
            m = intro_msg(&c[tt_rng_below(&rng, N)]);
            (void)rdv_cli_try(k, &m);
            break;
        default:
            if (tt_rng_below(&rng, 10) == 0)
                tern_conn_close(k->n.conn, sim_now(w.s), 0, "bye", 3);
            break;
        }
        if (r % 20 == 19) tnet_run_ms(w.s, 10);
    }
    tnet_run_ms(w.s, 1000);
    tern_rdv_stats st = rdv_node_stats(&w.srv);
    tern_relay_stats rs;
    tern_relay_get_stats(relay, &rs);
    printf("  churn: %llu joins, %llu group messages, %llu calls, %llu introductions, %llu slow "
           "peers closed, %llu events not queued, %llu relay sessions opened, %llu evicted, "
           "%llu closed with their peers\n", (unsigned long long)st.joins,
           (unsigned long long)st.group_msgs, (unsigned long long)st.calls,
           (unsigned long long)st.introductions, (unsigned long long)st.slow_closed,
           (unsigned long long)st.queue_dropped, (unsigned long long)rs.opened,
           (unsigned long long)rs.evicted, (unsigned long long)st.relay_closed);
    TT_CHECK(st.peer_state_max <= cfg.max_peer_state);
    TT_CHECK(st.queue_max <= cfg.max_queue_bytes + cfg.max_queue_bytes / 4);
    TT_CHECK(st.queue_dropped > 0);
    TT_CHECK(rs.sessions <= lc.max_sessions);
    /* everybody leaves: all state goes, relay sessions with it (35 s: a peer replaced above
     * vanished without a word, and the server's idle timeout ends it) */
    for (uint32_t i = 0; i < N; i++)
        if (c[i].n.conn && !c[i].n.closed)
            tern_conn_close(c[i].n.conn, sim_now(w.s), 0, "bye", 3);
    tnet_run_ms(w.s, 35000);
    st = rdv_node_stats(&w.srv);
    tern_relay_get_stats(relay, &rs);
    TT_CHECK_EQ_U64(st.peers, 0);
    TT_CHECK_EQ_U64(st.groups + st.services + st.calls_pending, 0);
    TT_CHECK_EQ_U64(st.mem_current, w.srv.base_mem);
    TT_CHECK_EQ_U64(rs.sessions, 0);
    TT_CHECK_EQ_U64(lmem.current, relay_empty);
    for (uint32_t i = 0; i < N; i++) rdv_cli_free(&c[i]);
    free(c);
    rdv_world_free(&w);
    tern_relay_del(relay);
    tt_mem_check_clean(&lmem, "relay");
}

static const tt_case cases[] = {
    TT_CASE(test_h3_offer_flood_bounded),
    TT_CASE(test_h4_silent_members_hold_bounded_queues),
    TT_CASE(test_h4_join_leave_loop_bounded_presence),
    TT_CASE(test_group_limits),
    TT_CASE(test_m1_intro_flood_rate_limited_legit_served),
    TT_CASE(test_m2_local_candidates_filtered),
    TT_CASE(test_m3_relay_sessions_bounded_target_not_locked),
    TT_CASE(test_m7_calls_bounded_legit_served),
    TT_CASE(test_peer_state_budget),
    TT_CASE(test_unread_responses_close_the_peer),
    TT_CASE(test_m4_tokens_required_no_squatting),
    TT_CASE(test_random_churn_returns_memory),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
