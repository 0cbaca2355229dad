/*
 * ternd's table of limits (limits.h). Each row names one field by its offset and size in one of
 * four configuration structures, so a new budget is one more row here and nothing else.
 */
#include "server/limits.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { IN_SETTINGS, IN_RDV, IN_RELAY, IN_STREAM };

typedef struct row {
    const char *name;
    uint8_t where, size; /* IN_*, sizeof the field (4 or 8) */
    size_t off;
    uint64_t scale;      /* the field holds value * scale (seconds to nanoseconds) */
    const char *what;
} row;

#define S(f, what) {#f, IN_SETTINGS, sizeof(((tern_settings *)0)->f), offsetof(tern_settings, f), 1, what}
#define R(f, what) {#f, IN_RDV, sizeof(((tern_rdv_config *)0)->f), offsetof(tern_rdv_config, f), 1, what}
#define L(n, f, k, what) {n, IN_RELAY, sizeof(((tern_relay_config *)0)->f), offsetof(tern_relay_config, f), k, what}
#define T(n, f, k, what) {n, IN_STREAM, sizeof(((tern_driver_stream_limits *)0)->f), offsetof(tern_driver_stream_limits, f), k, what}

static const row rows[] = {
    /* the tern endpoint: connections, memory, paths */
    S(max_connections, "connections at once"),
    S(max_conns_per_ip, "connections from one IPv4 address or IPv6 /64"),
    S(max_half_open, "half-open handshakes before every Initial needs a retry token"),
    S(handshake_rate, "handshakes per second per source IP (0: no limit)"),
    S(handshake_burst, "bucket depth of handshake_rate"),
    S(conn_memory, "bytes one connection may make the server hold"),
    S(max_memory, "bytes the endpoint may hold in all; new handshakes refused above 7/8"),
    S(flow_window, "fragments in flight per flow"),
    S(max_flows, "flows one peer may open"),
    S(send_buffer, "bytes queued per flow"),
    S(max_datagram_queue, "datagram frames queued per connection"),
    S(probe_tries, "datagrams to an unanswered candidate address before probing stops"),
    S(new_paths_per_s, "new source addresses one connection takes on per second"),
    /* the rendezvous server */
    R(max_peers, "connections tracked by the rendezvous service"),
    R(max_local_cands, "LOCAL candidates kept per peer"),
    R(max_services, "services server-wide"),
    R(max_services_per_peer, "services one peer offers"),
    R(max_groups, "groups server-wide"),
    R(max_groups_per_peer, "groups one peer joins"),
    R(max_group_members, "members of one group"),
    R(join_rate, "JOIN + LEAVE per second per peer (0: no limit)"),
    R(join_burst, "bucket depth of join_rate"),
    R(presence_rate, "PRESENCE events per second per group (0: no limit)"),
    R(presence_burst, "bucket depth of presence_rate"),
    R(presence_max_members, "groups larger than this send no PRESENCE"),
    R(group_rate, "GROUP_MSG per second per group (0: no limit)"),
    R(group_burst, "bucket depth of group_rate"),
    R(peer_rate, "GROUP_MSG per second per peer (0: no limit)"),
    R(peer_burst, "bucket depth of peer_rate"),
    R(intro_rate, "INTRODUCE per second per requester (0: no limit)"),
    R(intro_burst, "bucket depth of intro_rate"),
    R(intro_target_rate, "introductions per second to one target from one IP (0: no limit)"),
    R(intro_target_burst, "bucket depth of intro_target_rate"),
    R(max_relay_per_peer, "relay sessions one peer's introductions hold open"),
    R(max_calls, "RPC calls in flight server-wide"),
    R(max_calls_per_peer, "RPC calls in flight per caller"),
    R(max_calls_per_provider, "RPC calls in flight to one provider"),
    R(max_queue_bytes, "bytes queued to one peer before its events are dropped"),
    R(max_peer_state, "bytes of rendezvous state one peer holds"),
    R(max_mem, "bytes of rendezvous state in all"),
    /* the relay */
    L("relay_max_sessions", max_sessions, 1, "relay sessions at once"),
    L("relay_max_per_addr", max_per_addr, 1, "relay sessions one IP:port is part of"),
    L("relay_idle_s", idle_timeout_ns, 1000000000ull, "seconds before an idle relay session is freed"),
    L("relay_rate", rate_bytes_per_s, 1, "bytes per second per relay session (0: no limit)"),
    L("relay_burst", burst_bytes, 1, "bucket depth of relay_rate, bytes"),
    /* tern over TCP and TLS: the streams clients open to the tern port */
    T("stream_max", max_streams, 1, "TCP/TLS streams accepted and open at once"),
    T("stream_per_ip", max_per_ip, 1, "streams from one IPv4 address or IPv6 /64"),
    T("stream_write_buffer", write_buffer, 1, "bytes queued per stream past the kernel's buffer"),
    T("stream_preamble_ms", preamble_timeout_ns, 1000000ull,
      "ms for a new stream (and its TLS handshake) to show the tern preamble"),
    T("stream_idle_s", idle_timeout_ns, 1000000000ull, "seconds before an idle stream is closed"),
    T("stream_accept_rate", accept_rate, 1,
      "streams accepted per second from one IPv4 address or IPv6 /64 (burst 2x)"),
    T("stream_buffer_total", buffer_total, 1,
      "bytes of write buffers all streams together may hold"),
};
#define N_ROWS (int)(sizeof(rows) / sizeof(rows[0]))

int ternd_limit_parse(const char *text, ternd_limit *out, FILE *err)
{
    const char *eq = strchr(text, '=');
    size_t nlen = eq ? (size_t)(eq - text) : strlen(text);
    int idx = -1;
    for (int i = 0; i < N_ROWS; i++)
        if (strlen(rows[i].name) == nlen && memcmp(rows[i].name, text, nlen) == 0) idx = i;
    if (idx < 0) {
        fprintf(err, "ternd: unknown limit '%.*s' (ternd --limits lists them)\n", (int)nlen, text);
        return -1;
    }
    if (eq == NULL || eq[1] < '0' || eq[1] > '9') {
        fprintf(err, "ternd: --limit %s needs =VALUE, a number\n", rows[idx].name);
        return -1;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(eq + 1, &end, 10);
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1ull << 10, end++;
    else if (*end == 'm' || *end == 'M') mul = 1ull << 20, end++;
    else if (*end == 'g' || *end == 'G') mul = 1ull << 30, end++;
    uint64_t max = rows[idx].size == 4 ? UINT32_MAX : UINT64_MAX / rows[idx].scale;
    if (errno != 0 || *end != '\0' || v > max / mul) {
        fprintf(err, "ternd: --limit %s=%s: not a number up to %llu\n", rows[idx].name, eq + 1,
                (unsigned long long)max);
        return -1;
    }
    out->index = idx;
    out->value = (uint64_t)v * mul;
    return 0;
}

static void *field(const row *r, tern_settings *st, tern_rdv_config *rdv, tern_relay_config *rl,
                   tern_driver_stream_limits *sl)
{
    uint8_t *base = r->where == IN_SETTINGS ? (uint8_t *)st
                    : r->where == IN_RDV    ? (uint8_t *)rdv
                    : r->where == IN_RELAY  ? (uint8_t *)rl
                                            : (uint8_t *)sl;
    return base ? base + r->off : NULL;
}

void ternd_limits_apply(const ternd_limit *l, int n, tern_settings *st, tern_rdv_config *rdv,
                        tern_relay_config *relay, tern_driver_stream_limits *stream)
{
    for (int i = 0; i < n; i++) {
        const row *r = &rows[l[i].index];
        void *p = field(r, st, rdv, relay, stream);
        if (p == NULL) continue;
        uint64_t v = l[i].value * r->scale;
        if (r->size == 4) {
            uint32_t v32 = (uint32_t)v;
            memcpy(p, &v32, 4);
        } else {
            memcpy(p, &v, 8);
        }
    }
}

void ternd_limits_list(FILE *out)
{
    tern_settings st;
    tern_rdv_config rdv;
    tern_relay_config rl;
    tern_driver_config dc; /* its stream_limits: the driver's defaults serve ternd */
    tern_settings_server_default(&st);
    tern_rdv_config_default(&rdv);
    tern_relay_config_default(&rl);
    tern_driver_config_default(&dc);
    fprintf(out, "ternd limits (--limit NAME=VALUE; docs/security.md):\n");
    for (int i = 0; i < N_ROWS; i++) {
        const void *p = field(&rows[i], &st, &rdv, &rl, &dc.stream_limits);
        uint64_t v = 0;
        if (rows[i].size == 4) {
            uint32_t v32;
            memcpy(&v32, p, 4);
            v = v32;
        } else {
            memcpy(&v, p, 8);
        }
        fprintf(out, "  %-24s %12llu  %s\n", rows[i].name,
                (unsigned long long)(v / rows[i].scale), rows[i].what);
    }
}
