/*
 * tern ping's pings (tools.h), for the direct command (cmd_ping.c) and peer mode (cmd_peer.c):
 * one PING at a time on the command's connection (tern_conn_ping: the core retransmits it until
 * its PONG arrives, and on_rtt reports the sample), the next one --interval after the previous
 * one went out, paced by a driver timer; the count and the RTTs for the summary.
 */
#include <stdio.h>

#include "tern/driver.h"
#include "tools/tools.h"

static void on_timer(tern_driver *d, tern_driver_timer *t, void *user)
{
    (void)d, (void)t;
    tools_pinger_send(user);
}

int tools_pinger_init(tools_pinger *pg, tools_conn *link, unsigned count, uint64_t interval_ns)
{
    pg->link = link;
    pg->count = count;
    pg->interval_ns = interval_ns;
    return tern_driver_timer_new(link->d, on_timer, pg, &pg->timer);
}

void tools_pinger_send(tools_pinger *pg)
{
    uint64_t now = tern_driver_now(pg->link->d);
    if (pg->link->conn == NULL || tern_conn_ping(pg->link->conn, now) != TERN_OK) return;
    pg->sent++;
    pg->sent_at = now;
    pg->waiting = 1;
}

int tools_pinger_answer(tools_pinger *pg, uint64_t rtt_ns)
{
    if (!pg->waiting) return 0; /* a keep-alive's answer */
    pg->waiting = 0;
    pg->answered++;
    if (pg->answered == 1 || rtt_ns < pg->rtt_min) pg->rtt_min = rtt_ns;
    if (rtt_ns > pg->rtt_max) pg->rtt_max = rtt_ns;
    pg->rtt_sum += rtt_ns;
    return 1;
}

void tools_pinger_next(tools_pinger *pg)
{
    if (pg->count != 0 && pg->sent >= pg->count) {
        tern_driver_stop(pg->link->d);
        return;
    }
    uint64_t next = pg->sent_at + pg->interval_ns;
    uint64_t now = tern_driver_now(pg->link->d);
    tern_driver_timer_set(pg->timer, next > now ? next : now);
}

void tools_pinger_summary(const tools_pinger *pg, const char *name)
{
    if (pg->sent == 0) return;
    printf("--- %s tern ping ---\n%u sent, %u answered", name, pg->sent, pg->answered);
    if (pg->answered > 0)
        printf(", rtt min/avg/max = %.3f/%.3f/%.3f ms", (double)pg->rtt_min / 1e6,
               (double)pg->rtt_sum / pg->answered / 1e6, (double)pg->rtt_max / 1e6);
    printf("\n");
    fflush(stdout);
}
