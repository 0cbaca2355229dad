/*
 * STUN over TCP under a connection flood, against a running ternd (e2e.sh stun_tcp starts it
 * with --stun-tcp-max 64 --stun-tcp-per-addr 8 --stun-tcp-idle 2 on 127.0.0.1):
 *   1. one address (127.0.0.2) opens 40 idle connections: ternd keeps 8 and closes the rest;
 *   2. a client from 127.0.0.3 gets its TCP Binding answer (XOR-MAPPED-ADDRESS its own);
 *   3. 20 more addresses (127.0.0.10..29) open 8 idle connections each, 160 against a table of
 *      64: at most 64 stay open, and the client from 127.0.0.3 is still answered, twice on one
 *      connection;
 *   4. a slow client (127.0.0.4) that sends a request one byte every 400 ms is closed after the
 *      2 s idle timeout (bytes without a complete request do not keep it), while a client
 *      (127.0.0.5) that sends a whole request every 800 ms stays;
 *   5. every idle connection is closed within the idle timeout plus a second.
 * Usage: stun_tcp_flood PORT. Prints what it saw; exit 0 pass, 1 fail.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tern/stun.h"
#include "tern/udp.h"

#define MAX_FLOOD 256
static int port;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL: " __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* A blocking TCP connection from src_ip (any port) to 127.0.0.1:port. */
static int connect_from(const char *src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src_ip, &a.sin_addr);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s: %s", src_ip, strerror(errno));
    struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &d.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&d, sizeof(d)) == 0, "connect from %s: %s", src_ip,
          strerror(errno));
    return fd;
}

/* 1 when the server closed fd (EOF or reset), 0 when it is still open. */
static int is_closed(int fd)
{
    char b[64];
    ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (r == 0) return 1;
    if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
    return 0;
}

static int count_closed(const int *fds, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += is_closed(fds[i]);
    return c;
}

static size_t request(uint8_t *buf, size_t cap, uint8_t seed)
{
    uint8_t tid[TERN_STUN_TID_LEN];
    for (int i = 0; i < TERN_STUN_TID_LEN; i++) tid[i] = (uint8_t)(seed + i);
    int n = tern_stun_binding_request(buf, cap, tid, 0, NULL);
    CHECK(n > 0, "cannot build a request");
    return (size_t)n;
}

/* Sends a Binding request on fd and waits (1 s) for its success answer, which must carry
 * src_ip as the XOR-MAPPED-ADDRESS. */
static void binding(int fd, const char *src_ip, uint8_t seed)
{
    uint8_t req[128], resp[2048];
    size_t n = request(req, sizeof(req), seed);
    CHECK(send(fd, req, n, MSG_NOSIGNAL) == (ssize_t)n, "send: %s", strerror(errno));
    size_t got = 0;
    uint64_t t0 = now_ms();
    for (;;) {
        int fl = tern_stun_frame_len(resp, got);
        if (fl > 0 && (size_t)fl <= got) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CHECK(now_ms() - t0 < 1000 && poll(&p, 1, 100) >= 0, "no answer from %s", src_ip);
        ssize_t r = recv(fd, resp + got, sizeof(resp) - got, MSG_DONTWAIT);
        CHECK(r != 0, "ternd closed the connection of %s instead of answering", src_ip);
        if (r > 0) got += (size_t)r;
    }
    tern_stun_msg m;
    CHECK(tern_stun_decode(&m, resp, (size_t)tern_stun_frame_len(resp, got), 1) == TERN_OK &&
              m.cls == TERN_STUN_CLASS_SUCCESS && memcmp(m.tid, req + 8, TERN_STUN_TID_LEN) == 0,
          "not a Binding success for %s", src_ip);
    char want[64], txt[64];
    tern_addr local;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    tern_addr_from_sockaddr(&local, (struct sockaddr *)&ss, sl);
    tern_addr_format(&local, want, sizeof(want));
    tern_addr_format(&m.xor_mapped, txt, sizeof(txt));
    CHECK(strcmp(want, txt) == 0, "mapped %s, not %s", txt, want);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: stun_tcp_flood PORT\n");
        return 2;
    }
    port = atoi(argv[1]);
    static int flood[MAX_FLOOD];
    int nf = 0;

    /* 1. per address */
    for (int i = 0; i < 40; i++) flood[nf++] = connect_from("127.0.0.2");
    sleep_ms(300);
    int closed = count_closed(flood, nf);
    printf("one address, 40 idle connections: %d closed by ternd, %d held\n", closed, nf - closed);
    CHECK(nf - closed == 8, "%d held for one address, not 8", nf - closed);

    /* 2. another client is served */
    int c = connect_from("127.0.0.3");
    binding(c, "127.0.0.3", 1);
    close(c);
    printf("a client from another address: answered during the flood\n");

    /* 3. many addresses against the table */
    uint64_t t_flood = now_ms();
    for (int a = 10; a < 30; a++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "127.0.0.%d", a);
        for (int i = 0; i < 8; i++) flood[nf++] = connect_from(ip);
    }
    sleep_ms(300);
    closed = count_closed(flood, nf);
    printf("21 addresses, %d connections: %d held (table of 64)\n", nf, nf - closed);
    CHECK(nf - closed <= 64, "%d held, more than the table of 64", nf - closed);
    c = connect_from("127.0.0.3");
    binding(c, "127.0.0.3", 2);
    binding(c, "127.0.0.3", 3);
    printf("the client from 127.0.0.3: answered twice on one connection with the table full\n");

    /* 4. a slow sender against a steady one */
    int slow = connect_from("127.0.0.4"), steady = connect_from("127.0.0.5");
    uint8_t req[128];
    size_t rn = request(req, sizeof(req), 9);
    uint64_t t0 = now_ms(), slow_closed_at = 0;
    size_t sent = 0;
    for (int k = 0; now_ms() - t0 < 3600; k++) {
        if (!slow_closed_at && sent < rn) {
            if (send(slow, req + sent, 1, MSG_NOSIGNAL) == 1) sent++;
        }
        if (!slow_closed_at && is_closed(slow)) slow_closed_at = now_ms();
        if (k % 2 == 0) binding(steady, "127.0.0.5", (uint8_t)(20 + k));
        sleep_ms(400);
    }
    CHECK(slow_closed_at != 0, "a connection that sent %zu bytes in 3.6 s without completing a "
                               "request is still open",
          sent);
    printf("a sender of one byte per 400 ms: closed after %.1f s; a request every 800 ms: "
           "still served after %.1f s\n",
           (double)(slow_closed_at - t0) / 1e3, (double)(now_ms() - t0) / 1e3);
    CHECK(slow_closed_at - t0 >= 1500 && slow_closed_at - t0 <= 3500,
          "the slow sender was closed after %llu ms, not about 2 s",
          (unsigned long long)(slow_closed_at - t0));
    CHECK(!is_closed(steady), "the steady client was closed");

    /* 5. idle ones are gone */
    closed = count_closed(flood, nf);
    printf("after %.1f s: %d of %d flood connections closed\n",
           (double)(now_ms() - t_flood) / 1e3, closed, nf);
    CHECK(closed == nf, "%d flood connections still open after the idle timeout", nf - closed);
    c = connect_from("127.0.0.2");
    binding(c, "127.0.0.2", 4);
    printf("the flooding address, once its connections idled out, is served again\n");
    close(c);
    close(slow);
    close(steady);
    for (int i = 0; i < nf; i++) close(flood[i]);
    return 0;
}
