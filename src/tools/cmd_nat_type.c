/* `tern nat-type HOST[:PORT]`: RFC 5780 NAT behaviour discovery against a server that has an
 * alternate address; the mapping tests run from one socket, the filtering tests from a fresh one. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tern/stun.h"
#include "tern/udp.h"
#include "tools/tools.h"

static void help(FILE *f)
{
    fprintf(f, "usage: tern nat-type HOST[:PORT] [--rto MS] [--tries N]\n"
               "Prints the NAT's mapping and filtering behaviour (RFC 5780). The server must\n"
               "have two addresses (ternd --alt, turnserver --rfc5780 style).\n"
               "  --rto MS     first retransmission timeout (default 100: filtering tests\n"
               "               expect timeouts)\n"
               "  --tries N    transmissions per test (default 4)\n");
}

static int open_for(const tern_addr *server, tern_addr *local)
{
    tern_addr any;
    memset(&any, 0, sizeof(any));
    any.family = server->family;
    /* a throw-away connected socket tells which local IP the kernel uses toward the server
     * (disconnecting the real one would release its port) */
    int probe, fd;
    struct sockaddr_storage ss;
    int sl = tern_addr_to_sockaddr(server, &ss);
    if (tern_udp_open(&any, 0, &probe) == TERN_OK) {
        if (connect(probe, (struct sockaddr *)&ss, (socklen_t)sl) == 0)
            tern_udp_local_addr(probe, local);
        close(probe);
    }
    if (tern_udp_open(&any, 0, &fd) != TERN_OK) return -1;
    tern_addr bound;
    if (tern_udp_local_addr(fd, &bound) == TERN_OK) local->port = bound.port;
    return fd;
}

int cmd_nat_type(int argc, char **argv)
{
    tools_stun_args args = {.rto_ms = 100, .tries = 4};
    tern_addr server, local;
    int arc = tools_stun_args_parse("tern nat-type", argc, argv, help, 0, &args, &server);
    if (arc >= 0) return arc;
    memset(&local, 0, sizeof(local));
    int fd = open_for(&server, &local);
    if (fd < 0) {
        perror("tern nat-type: socket");
        return 1;
    }
    uint8_t seed[8], buf[2048];
    randombytes_buf(seed, sizeof(seed));
    tern_stun_nat n;
    tern_stun_nat_start(&n, tools_now_ns(), &local, &server, seed,
                        (uint64_t)args.rto_ms * TERN_NS_PER_MS, (uint32_t)args.tries);
    int switched = 0;
    for (int guard = 0; guard < 100000 && !n.done; guard++) {
        tern_addr dest;
        int len = tern_stun_nat_poll(&n, tools_now_ns(), buf, sizeof(buf), &dest);
        if (n.filtering_phase && !switched) {
            tern_addr l2;
            int fd2 = open_for(&server, &l2);
            if (fd2 >= 0) {
                close(fd);
                fd = fd2;
            }
            switched = 1;
        }
        if (len > 0) {
            tern_udp_send_one(fd, &dest, buf, (size_t)len);
            continue;
        }
        if (tools_wait_readable(fd, tern_stun_nat_deadline(&n))) {
            ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0) tern_stun_nat_recv(&n, tools_now_ns(), buf, (size_t)r);
        }
    }
    close(fd);
    char txt[64];
    if (n.mapped[0].family) printf("mapped: %s\n", tern_addr_format(&n.mapped[0], txt, sizeof(txt)));
    if (n.error != TERN_OK || !n.done) {
        fprintf(stderr, "tern nat-type: %s\n",
                n.error == TERN_ERR_NOT_FOUND ? "the server does not support RFC 5780 (no OTHER-ADDRESS)"
                : n.error == TERN_ERR_HANDSHAKE_TIMEOUT ? "no answer from the server"
                : n.error == TERN_ERR_REFUSED ? "the server answered with an error"
                                              : "discovery failed");
        return 1;
    }
    printf("mapping: %s\n", tern_stun_nat_name(n.mapping));
    printf("filtering: %s\n", tern_stun_nat_name(n.filtering));
    return 0;
}
