/* `tern stun HOST[:PORT]`: one Binding transaction (RFC 8489 retransmissions), prints the mapped
 * address. */
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
    fprintf(f, "usage: tern stun HOST[:PORT] [--rto MS] [--tries N] [-v]\n"
               "Sends a STUN Binding request (port %d by default) and prints the mapped address.\n"
               "  --rto MS     first retransmission timeout (default 500, doubling)\n"
               "  --tries N    transmissions before giving up (default 7)\n"
               "  -v           also print the server's SOFTWARE, RESPONSE-ORIGIN, OTHER-ADDRESS\n",
            TERN_STUN_PORT);
}

int cmd_stun(int argc, char **argv)
{
    tools_stun_args args = {.rto_ms = 500, .tries = 7};
    tern_addr server, any;
    int arc = tools_stun_args_parse("tern stun", argc, argv, help, 1, &args, &server);
    if (arc >= 0) return arc;
    const char *host = args.host;
    long rto_ms = args.rto_ms, tries = args.tries;
    int verbose = args.verbose;
    memset(&any, 0, sizeof(any));
    any.family = server.family;
    int fd;
    if (tern_udp_open(&any, 0, &fd) != TERN_OK) {
        perror("tern stun: socket");
        return 1;
    }
    uint8_t tid[TERN_STUN_TID_LEN], req[128], buf[2048];
    randombytes_buf(tid, sizeof(tid));
    int len = tern_stun_binding_request(req, sizeof(req), tid, 0, "tern");
    tern_stun_txn t;
    tern_stun_txn_start(&t, tools_now_ns(), tid, (uint64_t)rto_ms * TERN_NS_PER_MS,
                        (uint32_t)tries);
    tern_udp_send_one(fd, &server, req, (size_t)len);
    tern_stun_msg m;
    int rc = 1;
    for (;;) {
        if (tools_wait_readable(fd, tern_stun_txn_deadline(&t))) {
            ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0 && tern_stun_txn_recv(&t, buf, (size_t)n, &m) == TERN_OK) break;
            continue;
        }
        int e = tern_stun_txn_expire(&t, tools_now_ns());
        if (e < 0) {
            fprintf(stderr, "tern stun: no answer from %s after %ld tries\n", host, tries);
            close(fd);
            return 1;
        }
        if (e == 1) tern_udp_send_one(fd, &server, req, (size_t)len);
    }
    close(fd);
    char txt[64];
    if (m.cls == TERN_STUN_CLASS_ERROR) {
        fprintf(stderr, "tern stun: error %u %.*s\n", m.error_code, (int)m.reason_len,
                m.reason ? (const char *)m.reason : "");
    } else if (m.present & (TERN_STUN_HAS_XOR_MAPPED | TERN_STUN_HAS_MAPPED)) {
        const tern_addr *a = (m.present & TERN_STUN_HAS_XOR_MAPPED) ? &m.xor_mapped : &m.mapped;
        printf("%s\n", tern_addr_format(a, txt, sizeof(txt)));
        rc = 0;
    } else {
        fprintf(stderr, "tern stun: the response has no mapped address\n");
    }
    if (verbose) {
        if (m.present & TERN_STUN_HAS_SOFTWARE)
            printf("software: %.*s\n", (int)m.software_len, (const char *)m.software);
        if (m.present & TERN_STUN_HAS_RESPONSE_ORIGIN)
            printf("response-origin: %s\n", tern_addr_format(&m.response_origin, txt, sizeof(txt)));
        if (m.present & TERN_STUN_HAS_OTHER_ADDRESS)
            printf("other-address: %s\n", tern_addr_format(&m.other_address, txt, sizeof(txt)));
    }
    return rc;
}
