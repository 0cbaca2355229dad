/*
 * `tern loadgen rdv --relay S`: the relay phase (see cmd_loadgen_rdv.c for the run).
 *
 * K disjoint pairs of registered peers are introduced once (ternd opens a relay session per
 * pair; PEER_INFO and INTRODUCED carry each side its channel); then, for S seconds, the first
 * side of each pair sends W relay datagrams (0x81 | its channel | inner, inner = 0x40, the pair
 * number, filler) to the server from its registered address, and each side answers every relay
 * datagram it receives at once, from its own address with the channel it received (which must be
 * its own: the relay rewrote it) and the same bytes; relay datagrams are never handed to the
 * endpoints. A pair that received nothing for 200 ms gets W new datagrams. Answers go out in the
 * same per-socket sendmmsg batches as the endpoints' packets. Lost = datagrams sent minus
 * received after a 300 ms drain without answers.
 */
#include <stdio.h>
#include <string.h>

#include "tools/loadgen_rdv.h"
#include "tools/tools.h"

/* Queues one relay datagram from peer pi to the server: 0x81 | ch | inner, where inner is
 * copied from src (len bytes in all, src's header overwritten with pi's channel). */
static void relay_queue(lgr *g, uint32_t pi, const uint8_t *src, size_t len)
{
    rpeer *p = &g->p[pi];
    uint8_t *d = lgr_queue(g, pi % g->n_socks, &p->local, &g->server, len);
    memcpy(d, src, len);
    tern_relay_hdr_put(d, p->ch);
}

/* W new datagrams from pair k's first side: inner = 0x40, the pair number, then filler. */
static void relay_fill(lgr *g, uint32_t k)
{
    uint8_t b[TERN_MAX_DATAGRAM];
    memset(b, 0xa5, g->relay_size);
    b[TERN_RELAY_HDR_LEN] = TERN_RELAY_INNER_FIXED;
    memcpy(b + TERN_RELAY_HDR_LEN + 1, &k, sizeof(k));
    for (uint32_t i = 0; i < g->relay_window; i++) relay_queue(g, g->pairs[k].a, b, g->relay_size);
}

/* A relay datagram for peer pi (never handed to its endpoint): it must come from the server,
 * carry pi's own channel and the number of pi's pair; counted, and answered when the run is on. */
void lgr_relay_recv(lgr *g, uint32_t pi, const tern_addr *from, const uint8_t *d, size_t len,
                    uint64_t now)
{
    if (pi == LGR_NO_PEER || g->p[pi].pair == LGR_NO_PAIR) {
        g->relay_stray++;
        return;
    }
    rpeer *p = &g->p[pi];
    uint32_t k;
    if (len < TERN_RELAY_HDR_LEN + 1 + sizeof(k)) {
        g->relay_misrouted++;
        return;
    }
    memcpy(&k, d + TERN_RELAY_HDR_LEN + 1, sizeof(k));
    const uint8_t *ch = tern_relay_hdr_get(d, len);
    if (!tern_addr_equal(from, &g->server) || !p->has_ch || ch == NULL ||
        memcmp(ch, p->ch, TERN_RELAY_CHANNEL_LEN) != 0 || k != p->pair ||
        len != g->relay_size) {
        g->relay_misrouted++;
        return;
    }
    g->relay_rx++;
    g->relay_rx_bytes += len - TERN_RELAY_HDR_LEN;
    g->pairs[k].last_rx = now;
    if (g->relay_answer) relay_queue(g, pi, d, len);
}

static int pair_ready(const lgr *g, uint32_t k)
{
    return g->p[g->pairs[k].a].has_ch && g->p[g->pairs[k].b].has_ch;
}

/* Introduces the pairs (after what the introduce phase left in flight) and waits up to
 * RELAY_SETUP_NS for their channels. Returns how many pairs hold both. */
static uint32_t relay_introduce(lgr *g)
{
    uint32_t k_max = g->registered / 2;
    if (g->n_pairs > k_max) g->n_pairs = k_max;
    uint64_t now = tools_now_ns();
    while (g->inflight && !tools_interrupted() && tools_now_ns() < now + TERN_NS_PER_S)
        lgr_iterate(g, 10);
    now = tools_now_ns();
    for (uint32_t k = 0; k < g->n_pairs; k++) {
        rpair *r = &g->pairs[k];
        r->a = g->reg[2 * k];
        r->b = g->reg[2 * k + 1];
        g->p[r->a].pair = g->p[r->b].pair = k;
        if (g->p[r->a].busy) continue; /* its earlier request was lost: left without channels */
        (void)lgr_intro_send(g, r->a, r->b, now);
    }
    lgr_pump(g);
    uint32_t ready = 0;
    uint64_t give_up = tools_now_ns() + RELAY_SETUP_NS;
    while (!tools_interrupted() && tools_now_ns() < give_up) {
        lgr_iterate(g, 10);
        ready = 0;
        for (uint32_t k = 0; k < g->n_pairs; k++) ready += pair_ready(g, k);
        if (ready == g->n_pairs && g->inflight == 0) break;
    }
    return ready;
}

/* The closed loop until end, over the pairs whose both sides hold a channel. */
static void relay_run(lgr *g, uint64_t t0, uint64_t end)
{
    uint64_t last_scan = t0;
    g->relay_answer = 1;
    for (uint32_t k = 0; k < g->n_pairs; k++) {
        g->pairs[k].last_rx = t0;
        if (pair_ready(g, k)) relay_fill(g, k);
    }
    lgr_pump(g);
    while (!tools_interrupted() && tools_now_ns() < end) {
        lgr_iterate(g, 10);
        uint64_t now = tools_now_ns(); /* after what iterate received: last_rx is never later */
        if (now - last_scan < 20 * TERN_NS_PER_MS) continue;
        last_scan = now;
        for (uint32_t k = 0; k < g->n_pairs; k++) {
            rpair *r = &g->pairs[k];
            if (now - r->last_rx > RELAY_SILENT_NS && pair_ready(g, k)) {
                r->last_rx = now;
                g->relay_refills++;
                relay_fill(g, k);
            }
        }
        lgr_pump(g);
    }
}

/* Introduces K disjoint pairs of registered peers, runs the closed loop for secs seconds and
 * prints the 'relay' line. 0 when every pair got both channels, datagrams came back and none was
 * misrouted. */
int lgr_relay_phase(lgr *g, double secs, long server_pid)
{
    uint32_t ready = relay_introduce(g);
    proc_sample s0, s1;
    lgr_proc_read(server_pid, &s0);
    uint64_t c0 = tools_cpu_ns(), t0 = tools_now_ns();
    relay_run(g, t0, t0 + (uint64_t)(secs * 1e9));
    uint64_t t1 = tools_now_ns(), c1 = tools_cpu_ns();
    lgr_proc_read(server_pid, &s1);
    uint64_t rx_in_time = g->relay_rx, bytes_in_time = g->relay_rx_bytes;
    /* stop answering; what is in flight lands (counted as received, not in the rate) */
    g->relay_answer = 0;
    while (!tools_interrupted() && tools_now_ns() < t1 + RELAY_DRAIN_NS) lgr_iterate(g, 10);
    double el = (double)(t1 - t0) / 1e9;
    double rate = el > 0 ? (double)rx_in_time / el : 0;
    int64_t lost = (int64_t)g->relay_tx - (int64_t)g->relay_rx;
    printf("relay seconds=%.3f pairs=%u ready=%u size=%u window=%u sent=%llu received=%llu "
           "lost=%lld send_dropped=%llu misrouted=%llu stray=%llu refills=%llu rate=%.0f "
           "gbps=%.3f client_cpu=%.0f%%",
           el, (unsigned)g->n_pairs, (unsigned)ready, (unsigned)g->relay_size,
           (unsigned)g->relay_window, (unsigned long long)g->relay_tx,
           (unsigned long long)g->relay_rx, (long long)lost,
           (unsigned long long)g->relay_tx_dropped, (unsigned long long)g->relay_misrouted,
           (unsigned long long)g->relay_stray, (unsigned long long)g->relay_refills, rate,
           el > 0 ? (double)bytes_in_time * 8 / el / 1e9 : 0.0,
           t1 - t0 > TERN_NS_PER_MS ? 100.0 * (double)(c1 - c0) / (double)(t1 - t0) : 0.0);
    if (s0.ok && s1.ok) {
        double cpu = (double)(s1.cpu_ns - s0.cpu_ns) / 1e9;
        printf(" server_cpu=%.0f%% server_cpu_s=%.2f per_server_cpu_s=%.0f", 100.0 * cpu / el,
               cpu, cpu > 0 ? (double)rx_in_time / cpu : 0.0);
    }
    printf("\n");
    fflush(stdout);
    return ready == g->n_pairs && g->relay_rx > 0 && g->relay_misrouted == 0 && g->relay_stray == 0
               ? 0
               : -1;
}
