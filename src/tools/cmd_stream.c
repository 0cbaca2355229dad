/*
 * tern stream: live video over a tern connection, measured frame by frame (stream.h has the
 * model and the formats).
 *
 * Sender (tern stream send --to ADDR --server-key KEY): frames from the synthetic encoder at
 * --bitrate, --fps and --gop for --duration seconds, or MPEG-TS cut into frames from stdin (--ts).
 * Once the handshake is done it opens a PARTIAL ordered flow for the frames and a RELIABLE one
 * for the end message. Each frame is one message (tern_flow_send_msg) with a deadline (--latency,
 * see below) that starts or belongs to its group of pictures (TERN_MSG_KEYFRAME / TERN_MSG_GOP),
 * so that a frame given up takes the rest of its GOP with it; FEC per --fec (adaptive by
 * default). The encoder follows the connection's target rate (on_target_rate), clamped to
 * [--min-bitrate, --bitrate]; a fall by more than a third also drops the frames still queued
 * unsent (tern_flow_flush), and the next frame is a keyframe, as it is after on_keyframe_request
 * and when the core refuses a frame whose reference is gone (TERN_ERR_STATE). The loop is the
 * driver's embedding API (poll on its fd, stdin for --ts, and the frame clock). After the last
 * frame it closes the media flow, sends the end message (frame count) and waits until both
 * flows are done (or the last deadline plus 2 s), then closes the connection.
 *
 * --latency: the core's deadline of a message counts from tern_flow_send_msg to delivery, and
 * the core, which has no synchronised clock, takes a whole RTT as the bound of the one-way delay
 * (src/core/flow_send.c): a frame is only started while deadline - RTT - its time on the wire -
 * RTT/4 is still ahead. So the default (auto) gives each frame 1.25 x the RTT (the larger of
 * the smoothed and the latest) + its time on the wire at the pacing rate + 100 ms: it is sent
 * while it can leave within about 100 ms of its capture, and given up after. A fixed --latency
 * below about 1.25 RTT sends nothing.
 *
 * Receiver (tern stream recv --listen ADDR): like tern recv, one sender at a time. For every
 * frame: latency = delivery (on_message, CLOCK_REALTIME) - capture (the sender's CLOCK_REALTIME
 * in the header; in the netlab both run on one host, so the clocks agree; across hosts, sync
 * them or read the figures as offsets); on time when delivered intact within --playout (default:
 * the smallest latency seen + 100 ms), late after, lost when never delivered; stall time and
 * percentiles (stream_stats_summary). It ends when the sender closes (or after its idle
 * timeout, or SIGINT) and prints a human line and a "result" line of key=value pairs.
 *
 * UDP mode (--udp-out / --udp-in, stream_udp.c) sends and measures the same frames through
 * another transport, e.g. srt-live-transmit.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tools/stream.h"
#include "tools/tools.h"

#define AUTO_SLACK_MS 100 /* --latency auto: frame_deadline_ms */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: tern stream send --to ADDR:PORT --server-key HEX [options]\n"
        "       tern stream send --udp-out HOST:PORT [options]     (UDP mode, e.g. into\n"
        "                                                           srt-live-transmit)\n"
        "       tern stream recv --listen ADDR:PORT [options]\n"
        "       tern stream recv --udp-in ADDR:PORT [options]      (UDP mode)\n"
        "Live video, measured per frame: the sender produces frames (synthetic, or MPEG-TS\n"
        "from stdin) and the receiver reports each frame's latency from capture to delivery,\n"
        "frames on time, late and lost, stall time and percentiles.\n"
        "Sender:\n"
        "  --bitrate R         video bitrate, at most (default 1M; k, M, G: decimal)\n"
        "  --min-bitrate R     the least the sender adapts down to (default bitrate / 8)\n"
        "  --fps N             frames per second (default 25)\n"
        "  --gop N             frames per group of pictures: a keyframe (5x a P-frame) every\n"
        "                      N frames (default 50)\n"
        "  --duration S        seconds of synthetic frames (default 30)\n"
        "  --seed N            the synthetic sizes' seed (default 1): same seed, same frames\n"
        "  --ts                MPEG-TS from stdin instead (a frame from one payload unit start\n"
        "                      of the video PID to the next; keyframes from the random access\n"
        "                      indicator); e.g. ffmpeg -re -i in.mp4 -c copy -f mpegts - |\n"
        "  --ts-pid PID        the video PID (default: the first video stream in the PMT)\n"
        "  --latency MS|auto   each frame's deadline in tern (default auto: 1.25 x RTT + the\n"
        "                      frame's time on the wire + 100 ms; the core counts a whole\n"
        "                      RTT as the one-way delay, so less than 1.25 x RTT sends nothing)\n"
        "  --fec off|fixed|adaptive  forward error correction of the frames (adaptive)\n"
        "  --no-adapt          keep --bitrate: ignore the connection's target rate\n"
        "  --udp-out HOST:PORT UDP mode: each frame as datagrams to HOST:PORT, no tern\n"
        "  --udp-size BYTES    UDP mode's datagram size at most (default 1316 = 7 x 188)\n");
    fprintf(f, "  (and tern send's connection options:)\n");
    tools_transport_usage(f);
    fprintf(f,
            "  --aead, --integrity-only, --cc, --payload, --timeout, --idle-timeout, -v: as tern\n"
            "                      send\n"
            "Receiver:\n"
            "  --listen ADDR:PORT  where to listen (UDP; port 0: any free port)\n"
            "  --key FILE          private key file (tern keygen); default: a fresh key\n"
            "  --udp-in ADDR:PORT  UDP mode: read the frames' datagrams there\n"
            "  --playout MS        a frame is on time when delivered within MS of its capture\n"
            "                      (default: the smallest latency seen + 100 ms)\n"
            "  --out FILE          write the MPEG-TS frames received, in order (tern mode)\n"
            "  --frames-log FILE   at the end, a line per frame: number, keyframe (1/0, - when\n"
            "                      lost), ok|corrupt|lost, latency in ms (-1 when lost)\n"
            "  --idle-timeout MS   end after this long without a word from the sender (30000;\n"
            "                      UDP mode: 10000 after the first datagram)\n"
            "  --quiet             no progress lines\n"
            "Latency uses CLOCK_REALTIME on both sides: run them on one host (the netlab) or\n"
            "with synchronised clocks. The receiver's last line is \"tern stream recv: result\n"
            "mode=tern|udp frames=N ontime=N ontime_pct=P late=N lost=N ... p50_ms p99_ms max_ms\n"
            "stall_ms ...\"; the sender's \"tern stream send: result ...\".\n"
            "Exit: 0 done, 1 other failure (receiver: no frame came), 2 usage, 3 wrong server\n"
            "      key, 4 no answer, 5 connection lost, 6 cannot read stdin or write --out.\n");
}

/* ---------------------------------------------------------------- sender (tern mode) */

typedef struct send_state {
    tools_conn link; /* first: tools_on_closed, tools_on_conn_free */
    const stream_opts *o;
    char where[64];
    tern_driver_connect_cfg cc;
    uint64_t t_connect;
    stream_source src;
    int phase; /* 0 connecting, 1 streaming, 2 draining, 3 done */
    uint64_t media, ctl;
    uint64_t drain_until;
    uint64_t sent, refused, rekeyed, kf_requests, rate_events, rate_changes, flushes;
    uint64_t flushed_bytes, bitrate_min;
    uint32_t last_deadline_ms;
    uint64_t initial_rtt_ns; /* the endpoint's settings.initial_rtt_ns */
    uint64_t rtt_wait_until; /* established, waiting for the first RTT sample until then */
    int failed, verbose;
} send_state;

static void sender_fail(send_state *s, const char *what, int rc)
{
    fprintf(stderr, "tern stream send: %s: %s\n", what, tern_strerror(rc));
    s->failed = 1;
    tern_driver_stop(s->link.d);
}

static void on_established(tern_conn *c, void *user)
{
    send_state *s = user;
    tern_flow_config fc;
    tern_flow_config_default(&fc);
    fc.reliability = TERN_FLOW_PARTIAL;
    fc.ordered = 1;
    fc.fec = s->o->fec == STREAM_FEC_OFF     ? TERN_FEC_OFF
             : s->o->fec == STREAM_FEC_FIXED ? TERN_FEC_FIXED
                                             : TERN_FEC_ADAPTIVE;
    /* adaptive: let a frame of 1-2 fragments have as much repair as source when the loss
     * and the round trip call for it (a lost frame costs the rest of its GOP up to a
     * keyframe a round trip later); the default cap, 25%, gives such a frame one repair */
    if (fc.fec == TERN_FEC_ADAPTIVE) fc.fec_repair_pct = 100;
    int rc = tern_flow_open(c, &fc, &s->media);
    if (rc != TERN_OK) return sender_fail(s, "cannot open the media flow", rc);
    tern_flow_config_default(&fc); /* reliable: the end message */
    rc = tern_flow_open(c, &fc, &s->ctl);
    if (rc != TERN_OK) return sender_fail(s, "cannot open the control flow", rc);
    if (!s->o->quiet)
        tools_transport_connected(stderr, "tern stream send", c, s->t_connect, &s->cc);
    /* the frame clock starts with the first RTT sample (until then the core bounds the one-way
     * delay by its initial RTT, 333 ms, and a deadline from the real one would be missed) */
    if (tern_conn_ping(c, tern_driver_now(s->link.d)) != TERN_OK) s->phase = 1;
    s->rtt_wait_until = tern_driver_now(s->link.d) + 2 * TERN_NS_PER_S;
}

static void on_rtt(tern_conn *c, uint64_t rtt_ns, void *user)
{
    send_state *s = user;
    (void)rtt_ns;
    if (c == s->link.conn && s->phase == 0) s->phase = 1;
}

static void on_keyframe_request(tern_conn *c, uint64_t flow, void *user)
{
    send_state *s = user;
    if (c != s->link.conn || flow != s->media) return;
    s->kf_requests++;
    s->src.gen.force_key = 1;
}

static void on_target_rate(tern_conn *c, uint64_t bps, void *user)
{
    send_state *s = user;
    if (c != s->link.conn) return;
    s->rate_events++;
    if (!s->o->adapt || s->phase > 1) return;
    uint64_t nb = bps < s->o->min_bitrate ? s->o->min_bitrate
                  : bps > s->o->bitrate   ? s->o->bitrate
                                          : bps;
    uint64_t cur = s->src.gen.bitrate;
    if (nb == cur) return;
    if (nb * 3 < cur * 2 && s->phase == 1) {
        /* a large fall: what is queued was encoded for a rate the path no longer has */
        int64_t dropped = tern_flow_flush(c, s->media, TERN_FLUSH_UNSENT);
        if (dropped > 0) {
            s->flushes++;
            s->flushed_bytes += (uint64_t)dropped;
            s->src.gen.force_key = 1; /* the GOP lost frames */
        }
    }
    s->src.gen.bitrate = nb;
    s->rate_changes++;
    if (nb < s->bitrate_min) s->bitrate_min = nb;
    if (s->verbose)
        fprintf(stderr, "tern stream send: bitrate %.3f Mbit/s (target %.3f)\n", nb / 1e6,
                bps / 1e6);
}

/* --latency auto for a frame of len bytes: the core's own bound of the one-way delay (the larger
 * of the smoothed and the latest RTT), a quarter of it that the core keeps for other traffic
 * cutting in, the frame's time on the wire at the pacing rate, and AUTO_SLACK_MS: a frame is
 * started as long as it can still go out within about AUTO_SLACK_MS of its capture. */
static uint32_t frame_deadline_ms(send_state *s, size_t len)
{
    if (s->o->latency_ms >= 0) return (uint32_t)s->o->latency_ms;
    tern_conn_stats st;
    tern_network_info ni;
    tern_conn_get_stats(s->link.conn, &st);
    tern_conn_network_info(s->link.conn, &ni);
    /* before the first RTT sample the core bounds the one-way delay by its initial RTT */
    uint64_t rtt = st.srtt_ns > st.latest_rtt_ns ? st.srtt_ns : st.latest_rtt_ns;
    if (st.min_rtt_ns == 0) rtt = s->initial_rtt_ns;
    uint64_t wire = ni.pacing_rate_bps ? (uint64_t)len * 8 * TERN_NS_PER_S / ni.pacing_rate_bps : 0;
    return (uint32_t)((rtt * 5 / 4 + wire) / TERN_NS_PER_MS + AUTO_SLACK_MS);
}

/* Queues one frame. Returns 0, or -1 after failing the stream. */
static int send_frame(send_state *s, stream_hdr *h, const uint8_t *msg, size_t len)
{
    uint64_t now = tern_driver_update_now(s->link.d);
    tern_msg_opts mo;
    memset(&mo, 0, sizeof(mo));
    mo.priority = -1;
    mo.deadline_ms = s->last_deadline_ms = frame_deadline_ms(s, len);
    mo.flags = (h->flags & STREAM_F_KEY) ? TERN_MSG_KEYFRAME : TERN_MSG_GOP;
    int rc = tern_flow_send_msg(s->link.conn, s->media, now, msg, len, &mo, NULL);
    if (rc == TERN_ERR_STATE && !(h->flags & STREAM_F_KEY)) {
        /* its GOP was given up: the encoder makes this frame a keyframe */
        if (stream_source_rekey(&s->src, h, &msg, &len) != 0) {
            sender_fail(s, "cannot build a keyframe", TERN_ERR_NOMEM);
            return -1;
        }
        s->rekeyed++;
        mo.flags = TERN_MSG_KEYFRAME;
        rc = tern_flow_send_msg(s->link.conn, s->media, now, msg, len, &mo, NULL);
    }
    if (rc == TERN_OK) {
        s->sent++;
        return 0;
    }
    if (rc == TERN_ERR_AGAIN) { /* the send buffer is full: this frame is lost */
        s->refused++;
        s->src.gen.force_key = 1;
        return 0;
    }
    sender_fail(s, "cannot queue a frame", rc);
    return -1;
}

/* Produces the frames that are due and queues them; at the end of the source, starts draining. */
static void pump(send_state *s, int stdin_readable)
{
    for (;;) {
        stream_hdr h;
        const uint8_t *msg;
        size_t len;
        int r = stream_source_next(&s->src, tools_now_ns(), stream_realtime_ns(), stdin_readable,
                                   &h, &msg, &len);
        stdin_readable = 0;
        if (r == 0) return;
        if (r == -2) {
            fprintf(stderr, "tern stream send: %s\n", s->o->ts ? strerror(errno) : "out of memory");
            s->failed = 1;
            r = -1;
        }
        if (r == -1) {
            uint64_t now = tern_driver_update_now(s->link.d);
            uint8_t end[5];
            stream_end_put(end, s->src.next);
            tern_flow_close(s->link.conn, s->media);
            int rc = tern_flow_send(s->link.conn, s->ctl, now, end, sizeof(end), 7);
            if (rc == TERN_OK) tern_flow_close(s->link.conn, s->ctl);
            s->phase = 2;
            s->drain_until = now + ((uint64_t)s->last_deadline_ms + 2000) * TERN_NS_PER_MS;
            return;
        }
        if (send_frame(s, &h, msg, len) != 0) return;
    }
}

static void sender_loop(send_state *s)
{
    tern_driver *d = s->link.d;
    for (;;) {
        int ms = tern_driver_timeout_ms(d);
        uint64_t now = tools_now_ns();
        if (s->phase == 1) {
            uint64_t w = stream_source_wait(&s->src, now);
            if (w != UINT64_MAX) {
                int fm = (int)((w + 999999) / 1000000);
                if (ms < 0 || fm < ms) ms = fm;
            }
        } else if (s->phase == 2) {
            uint64_t left = s->drain_until > now ? s->drain_until - now : 0;
            if (ms < 0 || (uint64_t)ms > left / 1000000) ms = (int)(left / 1000000);
            ms = ms > 50 ? 50 : ms;
        }
        struct pollfd p[2] = {{.fd = tern_driver_fd(d), .events = POLLIN},
                              {.fd = 0, .events = POLLIN}};
        int nfds = s->phase == 1 && s->o->ts ? 2 : 1;
        if (poll(p, (nfds_t)nfds, ms) < 0 && errno != EINTR) break;
        int r = tern_driver_process(d);
        if (r != TERN_OK) {
            if (r < 0)
                fprintf(stderr, "tern stream send: event loop failed: %s\n", strerror(errno));
            break;
        }
        if (s->link.conn == NULL) break;
        if (s->phase == 1) {
            pump(s, nfds == 2 && (p[1].revents & (POLLIN | POLLHUP)));
            tern_driver_flush(d);
        }
        if (s->phase == 2) {
            now = tools_now_ns();
            if ((tern_flow_queued(s->link.conn, s->media) == 0 &&
                 tern_flow_queued(s->link.conn, s->ctl) == 0) ||
                now >= s->drain_until) {
                s->phase = 3;
                break;
            }
        }
        if (s->failed) break;
    }
}

static int stream_send(const stream_opts *o, const tools_client_opts *co)
{
    const char *cmd = "tern stream send";
    send_state s;
    memset(&s, 0, sizeof(s));
    s.o = o;
    s.verbose = co->verbose;
    s.bitrate_min = o->bitrate;
    uint8_t pub[TERN_KEY_LEN];
    if (co->to == NULL || co->server_key == NULL) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    if (tools_server_key(cmd, co->server_key, pub) != 0) return XFER_EXIT_USAGE;
    tern_addr remote;
    if (tools_resolve(co->to, 4433, &remote) != 0 ||
        tools_transport_connect_cfg(cmd, &co->transport, &remote, pub, &s.cc) != 0)
        return XFER_EXIT_USAGE;
    tern_addr_format(s.cc.remote.family ? &s.cc.remote : &s.cc.stream_remote, s.where,
                     sizeof(s.where));
    if (stream_source_init(&s.src, o->ts, o->bitrate, o->fps, o->gop, o->seed, o->duration_s,
                           o->ts_pid) != 0) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        stream_source_free(&s.src);
        return XFER_EXIT_OTHER;
    }
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    tools_client_settings(co, &dc.endpoint.settings);
    s.initial_rtt_ns = dc.endpoint.settings.initial_rtt_ns;
    tern_callbacks *cb = &dc.endpoint.callbacks;
    cb->on_established = on_established;
    cb->on_rtt = on_rtt;
    cb->on_closed = tools_on_closed;
    cb->on_conn_free = tools_on_conn_free;
    cb->on_keyframe_request = on_keyframe_request;
    cb->on_target_rate = on_target_rate;
    dc.endpoint.user_data = &s;
    tools_transport_watch(&dc, &s.cc, &s.link);
    int exit_code = XFER_EXIT_OTHER;
    uint64_t grace = 0;
    int rc = tern_driver_new(&dc, &s.link.d);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot set up: %s (%s)\n", cmd, tern_strerror(rc), strerror(errno));
        goto out;
    }
    s.t_connect = tools_now_ns();
    rc = tern_driver_connect_opts(s.link.d, &s.cc, &s.link.conn);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", cmd, s.where, tern_strerror(rc));
        goto out;
    }
    tools_catch_signals(s.link.d);
    /* the frame clock starts once the connection is up */
    while (s.phase == 0 && s.link.conn && !s.failed) {
        struct pollfd p = {.fd = tern_driver_fd(s.link.d), .events = POLLIN};
        int ms = tern_driver_timeout_ms(s.link.d);
        if (s.rtt_wait_until && (ms < 0 || ms > 50)) ms = 50;
        if (poll(&p, 1, ms) < 0 && errno != EINTR) break;
        if (tern_driver_process(s.link.d) != TERN_OK) break;
        if (s.rtt_wait_until && tools_now_ns() >= s.rtt_wait_until) s.phase = 1;
    }
    if (s.phase == 1) {
        s.src.t0_mono = tools_now_ns(); /* the first frame is captured now */
        s.src.t0_real = stream_realtime_ns();
        sender_loop(&s);
    }
    grace = 300 * TERN_NS_PER_MS;
    if (s.phase >= 2 && s.link.closed.err == TERN_ERR_PEER_CLOSED && s.link.closed.code == 0) {
        exit_code = XFER_EXIT_OK; /* the receiver had it all (end message, flow closed) first */
    } else if (s.link.closed.err != 0) {
        exit_code =
            tools_explain_conn_error(cmd, s.where, &s.link.closed, co->timeout_ms, co->idle_ms);
    } else if (s.phase == 3 && !s.failed) {
        exit_code = XFER_EXIT_OK;
    } else if (tools_interrupted()) {
        fprintf(stderr, "%s: interrupted\n", cmd);
    } else if (s.phase == 0) {
        fprintf(stderr, "%s: the connection ended before it was established\n", cmd);
    }
    if (s.phase >= 1) {
        tern_conn_stats st;
        memset(&st, 0, sizeof(st));
        if (s.link.conn) tern_conn_get_stats(s.link.conn, &st);
        double secs = (double)(tools_now_ns() - s.src.t0_mono) / 1e9;
        printf("%s: result mode=tern frames=%u sent=%llu refused=%llu rekeyed=%llu "
               "keyframes=%llu bytes=%llu seconds=%.3f bitrate_final=%llu bitrate_min=%llu "
               "rate_events=%llu rate_changes=%llu flushes=%llu flushed_bytes=%llu "
               "kf_requests=%llu deadline_ms=%u packets_lost=%llu retransmitted=%llu "
               "fec_repair_sent=%llu fec_repair_lost=%llu fec_unsaved=%llu "
               "msgs_dropped_dep=%llu messages_abandoned=%llu "
               "srtt_ms=%.1f min_rtt_ms=%.1f\n",
               cmd, s.src.next, (unsigned long long)s.sent, (unsigned long long)s.refused,
               (unsigned long long)s.rekeyed, (unsigned long long)s.src.keyframes,
               (unsigned long long)s.src.bytes, secs, (unsigned long long)s.src.gen.bitrate,
               (unsigned long long)s.bitrate_min, (unsigned long long)s.rate_events,
               (unsigned long long)s.rate_changes, (unsigned long long)s.flushes,
               (unsigned long long)s.flushed_bytes, (unsigned long long)s.kf_requests,
               s.last_deadline_ms, (unsigned long long)st.packets_lost,
               (unsigned long long)st.packets_retransmitted_frags,
               (unsigned long long)st.fec_repair_sent, (unsigned long long)st.fec_repair_lost,
               (unsigned long long)st.fec_unsaved, (unsigned long long)st.msgs_dropped_dep,
               (unsigned long long)st.messages_abandoned, (double)st.srtt_ns / 1e6,
               (double)st.min_rtt_ns / 1e6);
        fflush(stdout);
        if (co->verbose) tools_print_counters(cmd, s.link.d, s.link.conn);
    }
out:
    tools_session_close(s.link.d, NULL, exit_code == 0 ? 0 : 1,
                        exit_code == 0 ? "done" : "sender gave up", grace);
    stream_source_free(&s.src);
    return exit_code;
}

/* ---------------------------------------------------------------- receiver (tern mode) */

typedef struct recv_state {
    tools_conn link; /* first: the sender's connection (one at a time) */
    const stream_opts *o;
    stream_stats st;
    FILE *out;
    int end_seen, media_closed, out_failed;
    uint64_t media; /* the flow the frames came on (valid once have_media) */
    int have_media;
    uint64_t bad_messages;
    tern_conn_stats cs; /* the connection's counters, taken when it ends */
    int have_cs;
} recv_state;

static int rv_accept(tern_conn *c, void *user)
{
    recv_state *r = user;
    if (r->link.conn != NULL) return -1; /* one sender at a time */
    r->link.conn = c;
    return 0;
}

static void rv_snapshot(recv_state *r, tern_conn *c)
{
    tern_conn_get_stats(c, &r->cs);
    r->have_cs = 1;
}

static void rv_message(tern_conn *c, uint64_t flow, const uint8_t *data, size_t len, void *user)
{
    recv_state *r = user;
    if (c != r->link.conn) return;
    uint64_t now = stream_realtime_ns();
    stream_hdr h;
    uint32_t n;
    if (stream_hdr_get(data, len, &h) == 0) {
        r->media = flow;
        r->have_media = 1;
        const uint8_t *pl = data + STREAM_HDR_LEN;
        int corrupt = !(h.flags & STREAM_F_TS) && stream_check(pl, h.size, h.num, 0) != 0;
        stream_stats_frame(&r->st, &h, now, corrupt);
        if (r->out && (h.flags & STREAM_F_TS) && !r->out_failed &&
            fwrite(pl, 1, h.size, r->out) != h.size) {
            fprintf(stderr, "tern stream recv: cannot write --out: %s\n", strerror(errno));
            r->out_failed = 1;
        }
    } else if (stream_end_get(data, len, &n) == 0) {
        r->st.total = n;
        r->end_seen = 1;
    } else {
        r->bad_messages++;
    }
    if (r->end_seen && r->media_closed) {
        rv_snapshot(r, c);
        tern_driver_stop(r->link.d);
    }
}

static void rv_flow_closed(tern_conn *c, uint64_t flow, void *user)
{
    recv_state *r = user;
    if (c != r->link.conn || !r->have_media || flow != r->media) return;
    r->media_closed = 1;
    if (r->end_seen) {
        rv_snapshot(r, c);
        tern_driver_stop(r->link.d);
    }
}

static void rv_skipped(tern_conn *c, uint64_t flow, uint64_t first, uint64_t count, void *user)
{
    recv_state *r = user;
    (void)flow, (void)first;
    if (c == r->link.conn) r->st.skipped += count;
}

static void rv_closed(tern_conn *c, int err, uint64_t code, const char *reason, size_t len,
                      void *user)
{
    recv_state *r = user;
    if (c == r->link.conn && !r->have_cs) rv_snapshot(r, c);
    tools_on_closed(c, err, code, reason, len, user);
}

static int stream_recv(const stream_opts *o, const char *listen, const char *keyfile,
                       const tools_listen_opts *lo)
{
    const char *cmd = "tern stream recv";
    recv_state r;
    memset(&r, 0, sizeof(r));
    r.o = o;
    stream_stats_init(&r.st);
    if (o->out) {
        r.out = !strcmp(o->out, "-") ? stdout : fopen(o->out, "wb");
        if (r.out == NULL) {
            fprintf(stderr, "%s: cannot write %s: %s\n", cmd, o->out, strerror(errno));
            return XFER_EXIT_FILE;
        }
    }
    tern_driver_config dc;
    tern_driver_config_default(&dc);
    int exit_code = XFER_EXIT_USAGE;
    if (tools_resolve(listen, 4433, &dc.listen[0]) != 0) goto done;
    dc.n_listen = 1;
    if (tools_listen_apply(cmd, lo, &dc) != 0) goto done;
    dc.endpoint.is_server = 1;
    dc.endpoint.has_static_key = 1;
    int rc = keyfile ? tern_keyfile_read(keyfile, &dc.endpoint.static_key)
                     : tern_keypair_generate(&dc.endpoint.static_key);
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot read the key %s: %s\n", cmd, keyfile ? keyfile : "",
                rc == TERN_ERR_MALFORMED ? "not a tern key file" : strerror(errno));
        goto done;
    }
    uint64_t idle = o->idle_ms ? o->idle_ms : 30000;
    dc.endpoint.settings.idle_timeout_ns = idle * TERN_NS_PER_MS;
    tern_callbacks *cb = &dc.endpoint.callbacks;
    cb->on_accept = rv_accept;
    cb->on_message = rv_message;
    cb->on_flow_closed = rv_flow_closed;
    cb->on_msg_skipped = rv_skipped;
    cb->on_closed = rv_closed;
    cb->on_conn_free = tools_on_conn_free;
    dc.endpoint.user_data = &r;
    char hex[2 * TERN_KEY_LEN + 1], where[64];
    tern_hex_encode(dc.endpoint.static_key.pub, TERN_KEY_LEN, hex);
    rc = tern_driver_new(&dc, &r.link.d);
    tern_keypair_wipe(&dc.endpoint.static_key);
    exit_code = XFER_EXIT_OTHER;
    if (rc != TERN_OK) {
        fprintf(stderr, "%s: cannot listen on %s: %s\n", cmd, listen, strerror(errno));
        goto done;
    }
    tern_addr la;
    tern_driver_local_addr(r.link.d, 0, &la);
    tern_addr_format(&la, where, sizeof(where));
    printf("%s: listening on udp %s\n%s: public key %s\n", cmd, where, cmd, hex);
    tools_listen_print(cmd, r.link.d, lo);
    fflush(stdout);
    tools_catch_signals(r.link.d);
    if (tern_driver_run(r.link.d) != TERN_OK) {
        fprintf(stderr, "%s: event loop failed: %s\n", cmd, strerror(errno));
        goto close;
    }
    if (r.link.closed.err != 0 && r.link.closed.err != TERN_ERR_PEER_CLOSED)
        tools_explain_conn_error(cmd, "the sender", &r.link.closed, 0, idle);
    char extra[512];
    const tern_conn_stats *cs = &r.cs;
    snprintf(extra, sizeof(extra),
             "ended=%d bad_messages=%llu messages_expired=%llu msgs_skipped_dep=%llu "
             "kf_requests_sent=%llu fec_repair_received=%llu fec_recovered=%llu "
             "fec_unrecoverable=%llu rx_packets=%llu",
             r.end_seen, (unsigned long long)r.bad_messages,
             (unsigned long long)cs->messages_expired, (unsigned long long)cs->msgs_skipped_dep,
             (unsigned long long)cs->keyframe_requests_sent,
             (unsigned long long)cs->fec_repair_received, (unsigned long long)cs->fec_recovered,
             (unsigned long long)cs->fec_unrecoverable, (unsigned long long)cs->rx_packets);
    exit_code = stream_report(cmd, "tern", &r.st, o->playout_ms * 1000000ull, extra);
    if (o->frames_log && stream_frames_log(cmd, o->frames_log, &r.st) != 0)
        exit_code = XFER_EXIT_FILE;
    if (r.out_failed) exit_code = XFER_EXIT_FILE;
close:
    tools_session_close(r.link.d, NULL, 0, "done", 300 * TERN_NS_PER_MS);
done:
    if (r.out && r.out != stdout) fclose(r.out);
    stream_stats_free(&r.st);
    return exit_code;
}

/* ---------------------------------------------------------------- arguments */

int cmd_stream(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? XFER_EXIT_USAGE : XFER_EXIT_OK;
    }
    int sending = !strcmp(argv[1], "send");
    if (!sending && strcmp(argv[1], "recv") != 0) {
        fprintf(stderr, "tern stream: send or recv, not %s\n", argv[1]);
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    const char *cmd = sending ? "tern stream send" : "tern stream recv";
    stream_opts o;
    memset(&o, 0, sizeof(o));
    o.bitrate = 1000000;
    o.fps = 25;
    o.gop = 50;
    o.duration_s = 30;
    o.seed = 1;
    o.ts_pid = -1;
    o.latency_ms = -1;
    o.fec = STREAM_FEC_ADAPTIVE;
    o.adapt = 1;
    o.udp_size = STREAM_UDP_MAX;
    tools_client_opts co;
    tools_client_opts_default(&co);
    tools_listen_opts lo;
    memset(&lo, 0, sizeof(lo));
    const char *listen = NULL, *keyfile = NULL;
    int min_given = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, took = 0;
        uint64_t u = 0;
        if (sending)
            took = tools_client_opt(&co, argc, argv, &i);
        else
            took = tools_listen_opt(&lo, argc, argv, &i);
        if (took == 1) continue;
        if (took < 0) {
            bad = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return XFER_EXIT_OK;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = 1;
        } else if (sending && !strcmp(a, "--ts")) {
            o.ts = 1;
        } else if (sending && !strcmp(a, "--no-adapt")) {
            o.adapt = 0;
        } else if (v == NULL) {
            bad = 1;
        } else if (sending && (!strcmp(a, "--bitrate") || !strcmp(a, "--min-bitrate"))) {
            bad = stream_parse_rate(v, a[2] == 'b' ? &o.bitrate : &o.min_bitrate);
            min_given |= a[2] == 'm';
            i++;
        } else if (sending && !strcmp(a, "--fps")) {
            bad = tools_parse_u64(v, 1, 240, 0, &u);
            o.fps = (unsigned)u;
            i++;
        } else if (sending && !strcmp(a, "--gop")) {
            bad = tools_parse_u64(v, 1, 10000, 0, &u);
            o.gop = (unsigned)u;
            i++;
        } else if (sending && !strcmp(a, "--duration")) {
            char *end = NULL;
            o.duration_s = strtod(v, &end);
            bad = end == v || *end != '\0' || !(o.duration_s > 0 && o.duration_s <= 86400);
            i++;
        } else if (sending && !strcmp(a, "--seed")) {
            bad = tools_parse_u64(v, 0, UINT64_MAX, 0, &o.seed);
            i++;
        } else if (sending && !strcmp(a, "--ts-pid")) {
            bad = tools_parse_u64(v, 0, 8190, 0, &u);
            o.ts_pid = (int)u;
            i++;
        } else if (sending && !strcmp(a, "--latency")) {
            if (strcmp(v, "auto") != 0) {
                bad = tools_parse_u64(v, 1, 600000, 0, &u);
                o.latency_ms = (int64_t)u;
            }
            i++;
        } else if (sending && !strcmp(a, "--fec")) {
            o.fec = !strcmp(v, "off")     ? STREAM_FEC_OFF
                    : !strcmp(v, "fixed") ? STREAM_FEC_FIXED
                                          : STREAM_FEC_ADAPTIVE;
            bad = o.fec == STREAM_FEC_ADAPTIVE && strcmp(v, "adaptive") != 0;
            i++;
        } else if (sending && !strcmp(a, "--udp-out")) {
            o.udp_out = v;
            i++;
        } else if (sending && !strcmp(a, "--udp-size")) {
            bad = tools_parse_u64(v, STREAM_UDP_HDR + 16, 1472, 0, &o.udp_size);
            i++;
        } else if (!sending && !strcmp(a, "--listen")) {
            listen = v;
            i++;
        } else if (!sending && !strcmp(a, "--key")) {
            keyfile = v;
            i++;
        } else if (!sending && !strcmp(a, "--udp-in")) {
            o.udp_in = v;
            i++;
        } else if (!sending && !strcmp(a, "--playout")) {
            bad = tools_parse_u64(v, 1, 600000, 0, &o.playout_ms);
            i++;
        } else if (!sending && !strcmp(a, "--frames-log")) {
            o.frames_log = v;
            i++;
        } else if (!sending && !strcmp(a, "--out")) {
            o.out = v;
            i++;
        } else if (!sending && !strcmp(a, "--idle-timeout")) {
            bad = tools_parse_u64(v, 1, 3600000, 0, &o.idle_ms);
            i++;
        } else {
            bad = 1;
        }
        if (bad) return tools_bad_argument(cmd, a, v, usage);
    }
    if (!min_given) o.min_bitrate = o.bitrate / 8;
    if (o.min_bitrate > o.bitrate) o.min_bitrate = o.bitrate;
    if (sending) return o.udp_out ? stream_udp_send(&o) : stream_send(&o, &co);
    if (o.udp_in) {
        if (o.idle_ms == 0) o.idle_ms = 10000;
        return stream_udp_recv(&o);
    }
    if (listen == NULL) {
        usage(stderr);
        return XFER_EXIT_USAGE;
    }
    return stream_recv(&o, listen, keyfile, &lo);
}
