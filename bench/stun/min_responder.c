/*
 * The ceiling for the STUN benchmark: the least a Binding responder can do on this kernel. One
 * blocking UDP socket; recvmmsg a batch, write a 32-byte success response (XOR-MAPPED-ADDRESS
 * only, IPv4) in place of each request that is at least 20 bytes with the magic cookie, sendmmsg
 * the batch. No validation beyond that, no counters: it is a yardstick, not a server.
 * Usage: stun_min_responder IPV4 PORT [--gso]
 * Without --gso (the ceiling the benchmark's targets use) every answer is its own datagram in
 * the sendmmsg. --gso is a separate reference for servers that use UDP GSO: answers to the same
 * client that sit next to each other in the batch leave as one UDP_SEGMENT send (the client
 * still receives one datagram per answer, or one GRO train if it asked for UDP_GRO).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int gso = argc == 4 && strcmp(argv[3], "--gso") == 0;
    if (argc != 3 && !gso) {
        fprintf(stderr, "usage: %s IPV4 PORT [--gso]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) return 2;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("bind");
        return 1;
    }
    struct sigaction act;
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_signal; /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    static uint8_t in[BATCH][1500], out[BATCH][32];
    struct mmsghdr rmsg[BATCH], smsg[BATCH];
    struct iovec riov[BATCH], siov[BATCH];
    struct sockaddr_in *dest[BATCH];
    int nsegs[BATCH];
    struct sockaddr_in from[BATCH];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(uint16_t))];
    } ctrl[BATCH];
    unsigned long long answered = 0;
    while (!stop) {
        for (int i = 0; i < BATCH; i++) {
            riov[i].iov_base = in[i];
            riov[i].iov_len = sizeof(in[i]);
            memset(&rmsg[i].msg_hdr, 0, sizeof(rmsg[i].msg_hdr));
            rmsg[i].msg_hdr.msg_iov = &riov[i];
            rmsg[i].msg_hdr.msg_iovlen = 1;
            rmsg[i].msg_hdr.msg_name = &from[i];
            rmsg[i].msg_hdr.msg_namelen = sizeof(from[i]);
        }
        int n = recvmmsg(fd, rmsg, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        int m = 0;
        for (int i = 0; i < n; i++) {
            const uint8_t *q = in[i];
            if (rmsg[i].msg_len < 20 || q[4] != 0x21 || q[5] != 0x12 || q[6] != 0xa4 ||
                q[7] != 0x42 || from[i].sin_family != AF_INET)
                continue;
            uint8_t *r = out[m];
            r[0] = 0x01; r[1] = 0x01; r[2] = 0; r[3] = 12;
            memcpy(r + 4, q + 4, 16);
            r[20] = 0x00; r[21] = 0x20; r[22] = 0; r[23] = 8;
            r[24] = 0; r[25] = 1;
            uint16_t port = ntohs(from[i].sin_port) ^ 0x2112;
            r[26] = (uint8_t)(port >> 8); r[27] = (uint8_t)port;
            uint8_t ip[4];
            memcpy(ip, &from[i].sin_addr, 4);
            for (int k = 0; k < 4; k++) r[28 + k] = ip[k] ^ q[4 + k];
            siov[m].iov_base = r;
            siov[m].iov_len = 32;
            dest[m] = &from[i];
            m++;
        }
        /* messages: one per answer, or (--gso) one per run of answers to the same client */
        int nm = 0;
        for (int a = 0; a < m;) {
            int run = 1;
            while (gso && a + run < m && dest[a + run]->sin_port == dest[a]->sin_port &&
                   dest[a + run]->sin_addr.s_addr == dest[a]->sin_addr.s_addr)
                run++;
            struct msghdr *h = &smsg[nm].msg_hdr;
            memset(h, 0, sizeof(*h));
            h->msg_iov = &siov[a];
            h->msg_iovlen = (size_t)run;
            h->msg_name = dest[a];
            h->msg_namelen = sizeof(*dest[a]);
            if (run > 1) {
                h->msg_control = ctrl[nm].buf;
                h->msg_controllen = sizeof(ctrl[nm].buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(h);
                c->cmsg_level = IPPROTO_UDP;
                c->cmsg_type = UDP_SEGMENT;
                c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                uint16_t seg = 32;
                memcpy(CMSG_DATA(c), &seg, sizeof(seg));
            }
            nsegs[nm++] = run;
            a += run;
        }
        int done = 0;
        while (done < nm) {
            int s = sendmmsg(fd, smsg + done, (unsigned)(nm - done), 0);
            if (s <= 0) break;
            for (int k = done; k < done + s; k++) answered += (unsigned long long)nsegs[k];
            done += s;
        }
    }
    fprintf(stderr, "stun_min_responder: answered %llu\n", answered);
    close(fd);
    return 0;
}
