/*
 * tern stream's UDP mode (stream.h): the same frames as tern mode, written as plain UDP datagrams
 * (--udp-out) into another transport's input, typically srt-live-transmit's, and read back from
 * its output (--udp-in), so that one tool measures tern and SRT alike. The sender does not pace:
 * each frame's datagrams leave at its capture time, as an encoder's would. The receiver counts a
 * frame delivered when its last datagram arrives, checks every byte, and ends on the sender's end
 * datagram (which srt-live-transmit delivers after every frame still deliverable), after
 * --idle-timeout without a datagram, or on SIGINT/SIGTERM. Also stream_report, the receiver's
 * lines, shared with tern mode.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tern/tern.h"
#include "tern/udp.h"
#include "tools/stream.h"
#include "tools/tools.h"

#define UDP_RCVBUF                                                                                 \
    (8 << 20) /* the receiver's socket buffer: a 10 Mbit/s keyframe burst and more                 \
               */

/* A UDP socket for a (socket(), then bind or connect to a). Returns the fd or -1 (printed). */
static int udp_socket(const char *cmd, const tern_addr *a, int bind_it)
{
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(a, &ss);
    if (sl < 0) {
        fprintf(stderr, "%s: bad address\n", cmd);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "%s: socket: %s\n", cmd, strerror(errno));
        return -1;
    }
    int buf = UDP_RCVBUF;
    if (bind_it && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)); /* not root: capped */
    if (!bind_it) (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if ((bind_it ? bind(fd, (struct sockaddr *)&ss, (socklen_t)sl)
                 : connect(fd, (struct sockaddr *)&ss, (socklen_t)sl)) != 0) {
        fprintf(stderr, "%s: %s: %s\n", cmd, bind_it ? "bind" : "connect", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int stream_udp_send(const stream_opts *o)
{
    const char *cmd = "tern stream send";
    tern_addr dst;
    if (tools_resolve(o->udp_out, 0, &dst) != 0 || dst.port == 0) {
        fprintf(stderr, "%s: --udp-out needs HOST:PORT\n", cmd);
        return XFER_EXIT_USAGE;
    }
    int fd = udp_socket(cmd, &dst, 0);
    if (fd < 0) return XFER_EXIT_OTHER;
    stream_source src;
    if (stream_source_init(&src, o->ts, o->bitrate, o->fps, o->gop, o->seed, o->duration_s,
                           o->ts_pid) != 0) {
        close(fd);
        fprintf(stderr, "%s: out of memory\n", cmd);
        return XFER_EXIT_OTHER;
    }
    tools_catch_signals(NULL);
    uint8_t dg[STREAM_UDP_MAX + 256];
    uint64_t datagrams = 0, errors = 0;
    int rc = XFER_EXIT_OK;
    while (!tools_interrupted() && !(src.eof && !o->ts)) {
        uint64_t now = tools_now_ns(), wait = stream_source_wait(&src, now);
        int readable = 0;
        if (o->ts || wait > 0) {
            struct pollfd p = {.fd = 0, .events = POLLIN};
            int ms = wait == UINT64_MAX ? 1000 : (int)((wait + 999999) / 1000000);
            int n = poll(&p, o->ts ? 1 : 0, ms);
            readable = n > 0;
            if (!o->ts && wait > 1000000) continue; /* woke early: wait again */
            if (!o->ts && wait > 0) {               /* the last millisecond: sleep it exactly */
                struct timespec ts = {0, (long)(stream_source_wait(&src, tools_now_ns()))};
                nanosleep(&ts, NULL);
            }
        }
        stream_hdr h;
        const uint8_t *msg;
        size_t len;
        int r = stream_source_next(&src, tools_now_ns(), stream_realtime_ns(), readable, &h, &msg,
                                   &len);
        if (r == 0) continue;
        if (r == -1) break;
        if (r < 0) {
            fprintf(stderr, "%s: %s\n", cmd, o->ts ? strerror(errno) : "out of memory");
            rc = XFER_EXIT_FILE;
            break;
        }
        unsigned parts = stream_udp_parts(&h, (size_t)o->udp_size);
        for (unsigned i = 0; i < parts; i++) {
            size_t dl = stream_udp_part(&h, msg + STREAM_HDR_LEN, i, (size_t)o->udp_size, dg);
            if (send(fd, dg, dl, 0) == (ssize_t)dl)
                datagrams++;
            else
                errors++; /* nothing listening yet (ICMP refused), or a full buffer */
        }
    }
    uint8_t end[5];
    stream_end_put(end, src.next);
    for (int i = 0; i < 5 && !tools_interrupted(); i++) {
        if (send(fd, end, sizeof(end), 0) != (ssize_t)sizeof(end)) errors++;
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    tools_release_signals();
    double secs = (double)(tools_now_ns() - src.t0_mono) / 1e9;
    printf("%s: result mode=udp frames=%u keyframes=%llu bytes=%llu datagrams=%llu "
           "send_errors=%llu seconds=%.3f\n",
           cmd, src.next, (unsigned long long)src.keyframes, (unsigned long long)src.bytes,
           (unsigned long long)datagrams, (unsigned long long)errors, secs);
    fflush(stdout);
    stream_source_free(&src);
    close(fd);
    return rc;
}

int stream_udp_recv(const stream_opts *o)
{
    const char *cmd = "tern stream recv";
    tern_addr a;
    if (tools_resolve(o->udp_in, 0, &a) != 0) return XFER_EXIT_USAGE;
    int fd = udp_socket(cmd, &a, 1);
    if (fd < 0) return XFER_EXIT_OTHER;
    stream_udp_rx *rx = malloc(sizeof(*rx));
    stream_stats st;
    stream_stats_init(&st);
    if (rx == NULL) {
        close(fd);
        return XFER_EXIT_OTHER;
    }
    stream_udp_rx_init(rx);
    printf("%s: listening on udp %s\n", cmd, o->udp_in);
    fflush(stdout);
    tools_catch_signals(NULL);
    uint8_t buf[65536];
    uint64_t last = 0, end_at = 0;
    while (!tools_interrupted()) {
        uint64_t now = tools_now_ns();
        if (end_at && now >= end_at) break;
        if (last && now - last >= o->idle_ms * 1000000ull) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) continue;
        uint64_t t = stream_realtime_ns();
        last = tools_now_ns();
        stream_hdr h;
        int corrupt = 0;
        int r = stream_udp_rx_datagram(rx, buf, (size_t)n, &h, &corrupt);
        if (r == 1) stream_stats_frame(&st, &h, t, corrupt);
        /* the end datagram comes after every frame the transport still delivers: a short grace
         * for the rest of its copies, then done */
        if (r == 2 && !end_at) end_at = last + 200000000ull;
    }
    tools_release_signals();
    st.total = rx->end_frames;
    char extra[256];
    snprintf(extra, sizeof(extra),
             "datagrams=%llu malformed=%llu dup_datagrams=%llu evicted=%llu ended=%d",
             (unsigned long long)rx->datagrams, (unsigned long long)rx->malformed,
             (unsigned long long)rx->dup, (unsigned long long)rx->evicted, rx->ended);
    int rc = stream_report(cmd, "udp", &st, o->playout_ms * 1000000ull, extra);
    if (o->frames_log && stream_frames_log(cmd, o->frames_log, &st) != 0) rc = XFER_EXIT_FILE;
    stream_stats_free(&st);
    free(rx);
    close(fd);
    return rc;
}

int stream_frames_log(const char *cmd, const char *path, const stream_stats *st)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot write %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    uint32_t frames = st->total > st->n ? st->total : st->n;
    for (uint32_t i = 0; i < frames; i++) {
        const stream_rec *r = i < st->n ? &st->rec[i] : NULL;
        if (r && r->state)
            fprintf(f, "%u %d %s %.3f\n", i, r->key, r->state == 1 ? "ok" : "corrupt",
                    (double)r->latency_ns / 1e6);
        else
            fprintf(f, "%u - lost -1\n", i);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    return 0;
}

int stream_report(const char *cmd, const char *mode, const stream_stats *st, uint64_t playout_ns,
                  const char *extra)
{
    stream_summary s;
    if (stream_stats_summary(st, playout_ns, &s) != 0) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return XFER_EXIT_OTHER;
    }
    printf("%s: %u frames: %u shown on time within %.1f ms (%.2f%%), %u arrived in time but "
           "undecodable (a frame before them in their GOP missing or late), %u late, %u lost (%llu "
           "skipped by the transport, %u corrupt); latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
           "stall %.0f ms; smallest latency %.1f ms\n",
           cmd, s.frames, s.ontime, s.playout_ms, s.ontime_pct, s.undecodable, s.late, s.lost,
           (unsigned long long)st->skipped, s.corrupt, s.p50_ms, s.p99_ms, s.max_ms, s.stall_ms,
           s.owd_ms);
    printf("%s: result mode=%s frames=%u ontime=%u ontime_pct=%.3f undecodable=%u "
           "arrived_ontime=%u late=%u lost=%u skipped=%llu corrupt=%u playout_ms=%.1f "
           "owd_ms=%.1f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f stall_ms=%.0f keyframes=%u bytes=%llu "
           "dup=%llu refused=%llu early=%llu%s%s\n",
           cmd, mode, s.frames, s.ontime, s.ontime_pct, s.undecodable, s.arrived_ontime, s.late,
           s.lost, (unsigned long long)st->skipped, s.corrupt, s.playout_ms, s.owd_ms, s.p50_ms,
           s.p99_ms, s.max_ms, s.stall_ms, s.keyframes, (unsigned long long)st->bytes,
           (unsigned long long)st->dup, (unsigned long long)st->refused,
           (unsigned long long)st->early, extra[0] ? " " : "", extra);
    fflush(stdout);
    return s.arrived_ontime + s.late > 0 ? XFER_EXIT_OK : XFER_EXIT_OTHER;
}
