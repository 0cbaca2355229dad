/*
 * Transports of the tern command (tools.h, "transports"): how a client command reaches its
 * listener (UDP, TCP, TLS, or UDP raced with a stream: --transport, --stream, --race-delay),
 * where a listener accepts streams (--tcp-listen, --tls-listen, --tls-cert, --tls-key), and the
 * lines that tell the user which transport and address a connection uses and each time that
 * changes (tern_conn_path's remote carries the transport: docs/protocol.md, "Stream transport").
 *
 * Defaults: --transport auto races UDP to --to and, the race delay later (the core's 250 ms), a
 * TCP stream to the same address and port (ternd and tern recv/bench listen for TCP on their UDP
 * port when asked); --transport tls goes to port 443 of that IP unless --stream names another
 * address. --stream's own "/tcp" or "/tls" suffix wins over --transport's kind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/driver.h"
#include "tools/tools.h"

#define TLS_DEFAULT_PORT 443

static const char *const CHOICE_NAMES[] = {"auto", "udp", "tcp", "tls"};

void tools_transport_opts_default(tools_transport_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->choice = TOOLS_TRANSPORT_AUTO;
}

int tools_transport_opt(tools_transport_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--transport") != 0 && strcmp(a, "--stream") != 0 &&
        strcmp(a, "--race-delay") != 0)
        return 0;
    if (*i + 1 >= argc) return -1;
    const char *v = argv[++*i];
    if (!strcmp(a, "--stream")) {
        o->stream = v;
        return 1;
    }
    if (!strcmp(a, "--race-delay"))
        return tools_parse_u64(v, 1, 60000, 0, &o->race_ms) == 0 ? 1 : -1;
    for (int c = 0; c < (int)(sizeof(CHOICE_NAMES) / sizeof(CHOICE_NAMES[0])); c++) {
        if (!strcmp(v, CHOICE_NAMES[c])) {
            o->choice = c;
            return 1;
        }
    }
    return -1;
}

void tools_transport_usage(FILE *f)
{
    fprintf(f,
            "  --transport auto|udp|tcp|tls  how to reach it (default auto: UDP, and TCP to the\n"
            "                      same address and port if UDP has not answered after the race\n"
            "                      delay; UDP is used whenever it works). tcp/tls: a stream only\n"
            "                      (TLS 1.3 on port 443 unless --stream says otherwise)\n"
            "  --stream ADDR:PORT[/tcp|/tls]  the listener's stream address (default: its UDP\n"
            "                      address over TCP; port 443 for tls), e.g. 203.0.113.2:443/tls\n"
            "  --race-delay MS     UDP's head start before the stream is tried (default 250)\n");
}

int tools_transport_connect_cfg(const char *cmd, const tools_transport_opts *o,
                                const tern_addr *remote, const uint8_t pub[TERN_KEY_LEN],
                                tern_driver_connect_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    memcpy(cfg->server_pub, pub, TERN_KEY_LEN);
    tern_connect_opts def; /* the core's race delay, said in the "connected" line */
    tern_connect_opts_default(&def);
    cfg->stream_after_ns = o->race_ms ? o->race_ms * TERN_NS_PER_MS : def.stream_after_ns;
    cfg->remote = *remote;
    cfg->remote.transport = TERN_TRANSPORT_UDP;
    if (o->choice == TOOLS_TRANSPORT_UDP) {
        cfg->choice = TERN_TRANSPORT_ONLY_UDP;
        return 0;
    }
    cfg->choice =
        o->choice == TOOLS_TRANSPORT_AUTO ? TERN_TRANSPORT_AUTO : TERN_TRANSPORT_ONLY_STREAM;
    if (o->stream != NULL) {
        uint16_t port = o->choice == TOOLS_TRANSPORT_TLS ? TLS_DEFAULT_PORT : remote->port;
        char host[128];
        const char *slash = strrchr(o->stream, '/');
        size_t hl = slash ? (size_t)(slash - o->stream) : strlen(o->stream);
        int kind = o->choice == TOOLS_TRANSPORT_TLS ? TERN_TRANSPORT_TLS : TERN_TRANSPORT_TCP;
        if (slash && !strcmp(slash, "/tls"))
            kind = TERN_TRANSPORT_TLS;
        else if (slash && !strcmp(slash, "/tcp"))
            kind = TERN_TRANSPORT_TCP;
        else if (slash)
            hl = sizeof(host); /* "/udp" or anything else: refused below */
        if (hl >= sizeof(host)) {
            fprintf(stderr, "%s: --stream %s: ADDR:PORT with an optional /tcp or /tls\n", cmd,
                    o->stream);
            return -1;
        }
        memcpy(host, o->stream, hl);
        host[hl] = '\0';
        if (tools_resolve(host, port, &cfg->stream_remote) != 0) return -1;
        cfg->stream_remote.transport = (uint8_t)kind;
        /* a host name (not an IP literal) goes in TLS's SNI, as a browser's would */
        static char sni[sizeof(host)];
        char *colon = strrchr(host, ':');
        if (colon && host[0] != '[') *colon = '\0';
        tern_addr lit;
        if (tern_addr_parse(&lit, host) != TERN_OK && strchr(host, '[') == NULL) {
            snprintf(sni, sizeof(sni), "%s", host);
            cfg->tls_server_name = sni;
        }
    } else {
        cfg->stream_remote = *remote;
        cfg->stream_remote.transport = TERN_TRANSPORT_TCP;
        if (o->choice == TOOLS_TRANSPORT_TLS) {
            cfg->stream_remote.transport = TERN_TRANSPORT_TLS;
            cfg->stream_remote.port = TLS_DEFAULT_PORT;
        }
    }
    if (cfg->choice == TERN_TRANSPORT_ONLY_STREAM) cfg->remote.family = TERN_AF_NONE;
    return 0;
}

int tools_on_stream_error(tern_driver *d, const tern_addr *remote, const char *line, void *user)
{
    tools_conn *t = user;
    (void)remote;
    if (!t->stream_only || t->closed.err != 0) return 0;
    tools_close_note_set(&t->closed, TERN_ERR_REFUSED, 0, line, strlen(line));
    tern_driver_stop(d);
    return 1; /* its handshake is closed now (on_closed: LOCAL_CLOSED, which the tools ignore) */
}

void tools_transport_watch(tern_driver_config *dc, const tern_driver_connect_cfg *cfg,
                           tools_conn *link)
{
    link->stream_only = cfg->choice == TERN_TRANSPORT_ONLY_STREAM;
    dc->on_stream_error = tools_on_stream_error;
    dc->on_stream_error_user = link;
}

const char *tools_transport_name(const tern_addr *a)
{
    return a->transport == TERN_TRANSPORT_TLS   ? "tls"
           : a->transport == TERN_TRANSPORT_TCP ? "tcp"
                                                : "udp";
}

void tools_transport_describe(const tern_conn *c, char *out, size_t len)
{
    tern_path_info pi;
    char addr[64];
    tern_conn_path(c, &pi);
    tern_addr_format(&pi.remote, addr, sizeof(addr));
    snprintf(out, len, "%s %s%s", tools_transport_name(&pi.remote), addr,
             pi.relayed ? " (relayed)" : "");
}

void tools_transport_connected(FILE *f, const char *cmd, const tern_conn *c, uint64_t since_ns,
                               const tern_driver_connect_cfg *cfg)
{
    char what[96];
    tools_transport_describe(c, what, sizeof(what));
    fprintf(f, "%s: transport %s, connected %.1f ms after the first attempt", cmd, what,
            (double)(tools_now_ns() - since_ns) / 1e6);
    if (cfg->choice == TERN_TRANSPORT_AUTO && cfg->stream_remote.family != TERN_AF_NONE)
        fprintf(f, " (UDP first, the stream after a race delay of %.0f ms)",
                (double)cfg->stream_after_ns / 1e6);
    fprintf(f, "\n");
    fflush(f);
}

void tools_transport_changed(FILE *f, const char *cmd, const tern_conn *c)
{
    char what[96];
    tools_transport_describe(c, what, sizeof(what));
    fprintf(f, "%s: transport now %s\n", cmd, what);
    fflush(f);
}

/* ---- listeners */

int tools_listen_opt(tools_listen_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **str = !strcmp(a, "--tcp-listen")   ? &o->tcp
                       : !strcmp(a, "--tls-listen") ? &o->tls
                       : !strcmp(a, "--tls-cert")   ? &o->cert
                       : !strcmp(a, "--tls-key")    ? &o->key
                                                    : NULL;
    if (str == NULL) return 0;
    if (*i + 1 >= argc) return -1;
    *str = argv[++*i];
    return 1;
}

void tools_listen_usage(FILE *f)
{
    fprintf(f,
            "  --tcp-listen ADDR:PORT  accept tern over TCP there too (for senders without UDP)\n"
            "  --tls-listen ADDR:PORT  accept tern over TLS 1.3 there too\n"
            "  --tls-cert FILE --tls-key FILE  PEM certificate and key for --tls-listen\n"
            "                          (default: a self-signed certificate made at start)\n");
}

int tools_listen_apply(const char *cmd, const tools_listen_opts *o, tern_driver_config *dc)
{
    const char *addrs[2] = {o->tcp, o->tls};
    for (int k = 0; k < 2; k++) {
        if (addrs[k] == NULL) continue;
        tern_addr *a = &dc->stream_listen[dc->n_stream_listen];
        if (tools_resolve(addrs[k], k ? TLS_DEFAULT_PORT : 4433, a) != 0) return -1;
        a->transport = k ? TERN_TRANSPORT_TLS : TERN_TRANSPORT_TCP;
        dc->n_stream_listen++;
    }
    if ((o->cert == NULL) != (o->key == NULL)) {
        fprintf(stderr, "%s: --tls-cert and --tls-key go together\n", cmd);
        return -1;
    }
    dc->tls_cert_file = o->cert;
    dc->tls_key_file = o->key;
    return 0;
}

void tools_listen_print(const char *cmd, tern_driver *d, const tools_listen_opts *o)
{
    for (size_t i = 0; i < tern_driver_n_stream_listeners(d); i++) {
        char txt[64];
        tern_addr a;
        if (tern_driver_stream_local_addr(d, i, &a) != TERN_OK) continue;
        int tls = a.transport == TERN_TRANSPORT_TLS;
        printf("%s: listening on %s %s%s\n", cmd, tools_transport_name(&a),
               tern_addr_format(&a, txt, sizeof(txt)),
               tls && o->cert == NULL ? " (self-signed certificate)" : "");
    }
    fflush(stdout);
}
