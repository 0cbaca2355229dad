/*
 * tern ping PEER_ID --via SERVER and tern chat GROUP --via SERVER: the peer-mode commands that
 * need no file transfer (tern send/recv --via live beside their direct modes).
 *
 * ping: registers (peer.c), asks the server to introduce PEER_ID, and the rendezvous client
 * opens the peer connection (tern_endpoint_connect_peer over every candidate); once it is
 * established, one PING at a time every --interval ms like the direct tern ping. Its output is
 * a contract with scripts (tests/e2e/peers.sh, the netlab NAT matrix); every line is flushed:
 *   registered as <peer-id-hex> public <addr>
 *   connected to <peer-id-hex> path <direct|relayed> <remote-addr> in <ms> ms
 *   reply from <peer-id-hex>: rtt=<ms> ms path=<direct|relayed>
 *   first byte after <ms> ms          (from INTRODUCE to the first PONG; after the first reply)
 *   path now <direct|relayed> <remote-addr>   (each move after the connected line)
 * An unknown peer prints "error: unknown peer <id>" as soon as the server says so (exit 1).
 *
 * chat: joins GROUP, prints "joined <group> members <n>", sends each stdin line as a group
 * message, prints received ones as "<id8>: <text>" and presence as "* <id8> joined|left"; on
 * EOF it leaves, waits for the server to acknowledge what it queued, and exits 0. It runs the
 * driver embedded (tern_driver_fd + poll on stdin).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/peer.h"
#include "tools/peer_text.h"
#include "tools/tools.h"

/* ---------------------------------------------------------------- tern ping --via */

typedef struct pping {
    tools_conn link; /* first: tools_on_closed, tools_on_conn_free; the session's target */
    peer_session ps;
    tools_pinger pg;
    int first_printed;
} pping;

static void ping_usage(FILE *f)
{
    fprintf(f,
            "usage: tern ping PEER_ID --via ADDR:PORT --server-key HEX [options]\n"
            "Registers with the rendezvous server, asks it to introduce PEER_ID, connects to that\n"
            "peer directly through the NATs (or through the relay) and pings it.\n"
            "  -c, --count N       pings (default 5; 0: until interrupted)\n"
            "  -i, --interval MS   between pings (default 1000)\n");
    peer_usage_opts(f);
    fprintf(f, "Exit: 0 replies came, 1 other failure (unknown peer, no reply), 2 usage,\n"
               "      3 wrong server key, 4 no answer (server or peer), 5 connection lost.\n");
}

static void pp_established(tern_conn *c, void *u)
{
    pping *p = u;
    (void)c; /* the target's (peer_session_target) */
    tools_pinger_send(&p->pg);
}

static void pp_rtt(tern_conn *c, uint64_t rtt, void *u)
{
    pping *p = u;
    if (!tools_pinger_answer(&p->pg, rtt)) return;
    uint64_t now = tern_driver_now(p->ps.d);
    char addr[64];
    printf("reply from %s: rtt=%.3f ms path=%s\n", p->ps.target_hex, (double)rtt / 1e6,
           peer_path_kind(c, addr, sizeof(addr), NULL));
    if (!p->first_printed) {
        p->first_printed = 1;
        printf("first byte after %.3f ms\n", (double)(now - p->ps.t_intro) / 1e6);
    }
    fflush(stdout);
    tools_pinger_next(&p->pg);
}

int cmd_ping_via(int argc, char **argv)
{
    peer_opts o;
    peer_opts_default(&o);
    const char *target = NULL;
    uint64_t count = 5, interval_ms = 1000;
    uint8_t target_id[TERN_PEER_ID_LEN];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, r = peer_parse_opt(&o, argc, argv, &i);
        if (r == 1) continue;
        if (r < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ping_usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--count")) && v) {
            bad = tools_parse_u64(v, 0, 1000000000, 0, &count);
            i++;
        } else if ((!strcmp(a, "-i") || !strcmp(a, "--interval")) && v) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &interval_ms);
            i++;
        } else if (a[0] != '-' && target == NULL) {
            target = a;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument("tern ping", a, v, ping_usage);
    }
    if (target == NULL) {
        ping_usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (peer_parse_id("tern ping", target, target_id) != 0) return XFER_EXIT_USAGE;
    pping *p = calloc(1, sizeof(*p));
    if (p == NULL) return XFER_EXIT_OTHER;
    int exit_code;

    tern_callbacks app;
    memset(&app, 0, sizeof(app));
    app.on_established = pp_established;
    app.on_rtt = pp_rtt;
    app.on_closed = tools_on_closed;
    app.on_conn_free = tools_on_conn_free;
    int rc = peer_session_start(&p->ps, "tern ping", &o, &app, NULL, p, 0);
    if (rc != 0) {
        exit_code = rc;
        goto out;
    }
    peer_session_target(&p->ps, target_id, &p->link);
    if (tools_pinger_init(&p->pg, &p->link, (unsigned)count, interval_ms * TERN_NS_PER_MS) !=
        TERN_OK) {
        exit_code = XFER_EXIT_OTHER;
        goto out;
    }
    tools_catch_signals(p->ps.d);
    if (tern_driver_run(p->ps.d) != TERN_OK) {
        fprintf(stderr, "tern ping: event loop failed: %s\n", strerror(errno));
        exit_code = XFER_EXIT_OTHER;
        goto out;
    }
    tools_pinger_summary(&p->pg, p->ps.target_hex);
    if (p->ps.exit_code) exit_code = p->ps.exit_code;
    else if (p->pg.answered > 0) exit_code = 0;
    else if (p->link.closed.err) {
        char where[96];
        snprintf(where, sizeof(where), "peer %.16s", p->ps.target_hex);
        exit_code = tools_explain_conn_error("tern ping", where, &p->link.closed, o.timeout_ms,
                                             o.idle_ms);
    } else {
        fprintf(stderr, "tern ping: no reply from %s\n", p->ps.target_hex);
        exit_code = XFER_EXIT_OTHER;
    }
out:
    tern_driver_timer_del(p->pg.timer);
    peer_session_end(&p->ps, 0, "ping done", p->ps.d ? 300 * TERN_NS_PER_MS : 0);
    free(p);
    return exit_code;
}

/* ---------------------------------------------------------------- tern chat */

typedef struct pchat {
    peer_session ps;
    const char *group;
    size_t group_len;
    int joined, eof, left;
    char line[TERN_RDV_MAX_PAYLOAD + 1];
    size_t line_len;
    uint64_t sent, received;
    int has_join_token;
    uint8_t join_token[TERN_RDV_TOKEN_LEN];
    char group_esc[4 * TERN_RDV_MAX_NAME + 16];
    char esc[4 * TERN_RDV_MAX_PAYLOAD + 16]; /* a peer's message, escaped for the terminal */
} pchat;

static void chat_usage(FILE *f)
{
    fprintf(f,
            "usage: tern chat GROUP --via ADDR:PORT --server-key HEX [options]\n"
            "Joins GROUP on the rendezvous server; each line on stdin goes to every member, and\n"
            "what they send is printed as \"<id8>: <text>\" (\"* <id8> joined|left\" for\n"
            "presence); control characters in what others send are printed escaped (\\n,\n"
            "\\xNN, \\u{XXXX}). End of input leaves the group and exits.\n"
            "  --join-token HEX    token for GROUP, for a ternd that requires one (`tern token\n"
            "                      join GROUP` on the server's secret)\n");
    peer_usage_opts(f);
    fprintf(f, "Exit: 0 left after end of input, 1 other failure (a refusal from the server),\n"
               "      2 usage, 3 wrong server key, 4 no answer, 5 connection lost.\n");
}

static void ch_registered(tern_rdv_client *rc, const tern_addr *pub, void *u)
{
    (void)pub;
    pchat *c = u;
    int r = tern_rdv_client_join(rc, tern_driver_now(c->ps.d), (const uint8_t *)c->group,
                                 c->group_len, c->has_join_token ? c->join_token : NULL);
    if (r != TERN_OK) {
        fprintf(stderr, "tern chat: cannot join: %s\n", tern_strerror(r));
        c->ps.exit_code = XFER_EXIT_OTHER;
        tern_driver_stop(c->ps.d);
    }
}

static void ch_joined(tern_rdv_client *rc, const uint8_t *g, size_t gl, uint32_t n,
                      const uint8_t *m, size_t nm, void *u)
{
    (void)rc, (void)m, (void)nm;
    pchat *c = u;
    if (c->joined) return;
    c->joined = 1;
    char name[4 * TERN_RDV_MAX_NAME + 16];
    printf("joined %s members %u\n", tools_text_escape(name, sizeof(name), g, gl), n);
    fflush(stdout);
}

static void print_id8(const uint8_t *id)
{
    char hex[2 * TERN_PEER_ID_LEN + 1];
    tern_hex_encode(id, TERN_PEER_ID_LEN, hex);
    printf("%.8s", hex);
}

static void ch_presence(tern_rdv_client *rc, const uint8_t *g, size_t gl, const uint8_t *id,
                        int ev, void *u)
{
    (void)rc, (void)g, (void)gl, (void)u;
    printf("* ");
    print_id8(id);
    printf(" %s\n", ev == TERN_RDV_PRESENCE_JOIN ? "joined" : "left");
    fflush(stdout);
}

static void ch_group_msg(tern_rdv_client *rc, const uint8_t *g, size_t gl, const uint8_t *from,
                         const uint8_t *d, size_t len, void *u)
{
    (void)rc, (void)g, (void)gl;
    pchat *c = u;
    c->received++;
    print_id8(from);
    /* a terminal is no place for a peer's control bytes (forged lines, escape sequences) */
    printf(": %s\n", tools_text_escape(c->esc, sizeof(c->esc), d, len));
    fflush(stdout);
}

static void ch_error(tern_rdv_client *rc, const tern_rdv_msg *e, void *u)
{
    (void)rc;
    pchat *c = u;
    if (e->req_kind == TERN_RDV_JOIN && !c->joined) {
        fprintf(stderr, "tern chat: ternd refused to join %s: %s\n", c->group_esc,
                tern_rdv_error_name(e->error));
        c->ps.exit_code = XFER_EXIT_OTHER;
        tern_driver_stop(c->ps.d);
        return;
    }
    fprintf(stderr, "tern chat: the server answered %s to a %s\n", tern_rdv_error_name(e->error),
            e->req_kind == TERN_RDV_JOIN        ? "join"
            : e->req_kind == TERN_RDV_GROUP_MSG ? "message"
            : e->req_kind == TERN_RDV_LEAVE     ? "leave"
                                                : "request");
    if (e->req_kind == TERN_RDV_JOIN || e->req_kind == TERN_RDV_REGISTER) {
        c->ps.exit_code = XFER_EXIT_OTHER;
        tern_driver_stop(c->ps.d);
    }
}

/* Reads what stdin has; sends each complete line. Returns -1 at end of input. */
static int ch_read(pchat *c)
{
    char buf[4096];
    ssize_t n;
    do n = read(STDIN_FILENO, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n == 0) return -1;
    uint64_t now = tern_driver_update_now(c->ps.d);
    for (size_t i = 0; i < (size_t)n;) {
        int complete;
        i += chat_lines_feed(c->line, TERN_RDV_MAX_PAYLOAD, &c->line_len, buf + i, (size_t)n - i,
                             &complete);
        if (!complete) break;
        int r = tern_rdv_client_group_send(c->ps.rdv, now, (const uint8_t *)c->group,
                                           c->group_len, (const uint8_t *)c->line, c->line_len);
        if (r != TERN_OK) fprintf(stderr, "tern chat: cannot send: %s\n", tern_strerror(r));
        else c->sent++;
        c->line_len = 0;
    }
    peer_session_kick(&c->ps);
    return 0;
}

int cmd_chat(int argc, char **argv)
{
    peer_opts o;
    peer_opts_default(&o);
    const char *group = NULL, *join_token = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = peer_parse_opt(&o, argc, argv, &i);
        if (r == 1) continue;
        if (r == 0 && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            chat_usage(stdout);
            return 0;
        }
        if (r == 0 && !strcmp(a, "--join-token") && i + 1 < argc) {
            join_token = argv[++i];
            continue;
        }
        if (r == 0 && a[0] != '-' && group == NULL) {
            group = a;
            continue;
        }
        fprintf(stderr, "tern chat: bad argument %s\n", a);
        chat_usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (group == NULL || strlen(group) == 0 || strlen(group) > TERN_RDV_MAX_NAME) {
        chat_usage(stderr);
        return XFER_EXIT_USAGE;
    }
    uint8_t token[TERN_RDV_TOKEN_LEN];
    if (join_token && peer_parse_token("tern chat", "--join-token", join_token, token) != 0)
        return XFER_EXIT_USAGE;
    pchat *c = calloc(1, sizeof(*c));
    if (c == NULL) return XFER_EXIT_OTHER;
    c->group = group;
    c->group_len = strlen(group);
    tools_text_escape(c->group_esc, sizeof(c->group_esc), (const uint8_t *)group, c->group_len);
    if (join_token) {
        memcpy(c->join_token, token, sizeof(token));
        c->has_join_token = 1;
    }
    tern_rdv_client_callbacks rcb;
    memset(&rcb, 0, sizeof(rcb));
    rcb.on_registered = ch_registered;
    rcb.on_joined = ch_joined;
    rcb.on_presence = ch_presence;
    rcb.on_group_msg = ch_group_msg;
    rcb.on_error = ch_error;
    int exit_code = peer_session_start(&c->ps, "tern chat", &o, NULL, &rcb, c, 0);
    if (exit_code != 0) goto out;
    tools_catch_signals(c->ps.d);
    uint64_t leave_deadline = 0;
    for (;;) {
        struct pollfd pf[2] = {{.fd = tern_driver_fd(c->ps.d), .events = POLLIN},
                               {.fd = STDIN_FILENO, .events = POLLIN}};
        /* stdin is read once joined, until its end */
        nfds_t nfds = c->joined && !c->eof ? 2 : 1;
        int to = tern_driver_timeout_ms(c->ps.d);
        if (c->left && (to < 0 || to > 20)) to = 20;
        int pr = poll(pf, nfds, to);
        if (pr < 0 && errno != EINTR) break;
        if (nfds == 2 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (ch_read(c) < 0) {
                c->eof = 1;
                int r = tern_rdv_client_leave(c->ps.rdv, tern_driver_update_now(c->ps.d),
                                              (const uint8_t *)c->group, c->group_len);
                peer_session_kick(&c->ps);
                c->left = r == TERN_OK;
                leave_deadline = tern_driver_now(c->ps.d) + 3 * TERN_NS_PER_S;
                if (!c->left) break;
            }
        }
        if (tern_driver_process(c->ps.d) != TERN_OK) break; /* stopped, or epoll failed */
        if (c->left && (tern_rdv_client_queued(c->ps.rdv) == 0 ||
                        tern_driver_now(c->ps.d) >= leave_deadline))
            break;
    }
    if (c->ps.exit_code) exit_code = c->ps.exit_code;
    else if (c->left) exit_code = 0;
    else if (tools_interrupted()) exit_code = 0;
    else exit_code = XFER_EXIT_OTHER;
out:
    peer_session_end(&c->ps, 0, "chat done", c->ps.d ? 300 * TERN_NS_PER_MS : 0);
    free(c);
    return exit_code;
}
