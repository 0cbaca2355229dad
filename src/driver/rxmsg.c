/*
 * What one received message holds besides its bytes (driver_int.h, drv_rx_parse): the control
 * messages recvmmsg left in its control buffer, and how its bytes split into datagrams.
 *
 * Pure: no socket, no state; the batched UDP module (udp.c) calls it for every message it
 * receives with control messages, and fuzz/fuzz_driver_rx.c for anything at all. The control buffer
 * is walked with offsets, never past ctl_len whatever the cmsg_len fields say (the kernel's are
 * always right; a wrong one stops the walk), and every value is copied out with memcpy (no
 * alignment assumed). Recognised: UDP_GRO (the segment size of a coalesced message), IP_PKTINFO /
 * IPV6_PKTINFO (the destination address: the local address when the socket asked for it), IP_TOS /
 * IPV6_TCLASS (the traffic class byte). The first of each kind counts.
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "driver/driver_int.h"

static void set_dst4(drv_rxmsg *m, const uint8_t ip[4], const tern_addr *bound)
{
    m->dst.family = TERN_AF_INET;
    memcpy(m->dst.ip, ip, 4);
    m->dst.port = bound ? bound->port : 0;
    m->has_dst = 1;
}

void drv_rx_parse(size_t len, const uint8_t *ctl, size_t ctl_len, const tern_addr *bound,
                  drv_rxmsg *m)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    size_t gro = 0;
    int have_gro = 0;
    m->has_dst = m->has_tos = 0;
    m->tos = 0;
    const size_t hdr = CMSG_LEN(0); /* the header, aligned: where the data starts */
    size_t off = 0;
    while (ctl != NULL && ctl_len - off >= sizeof(struct cmsghdr)) {
        struct cmsghdr h;
        memcpy(&h, ctl + off, sizeof(h));
        size_t clen = (size_t)h.cmsg_len;
        if (clen < hdr || clen > ctl_len - off) break; /* malformed: nothing after it is trusted */
        const uint8_t *v = ctl + off + hdr;
        size_t vlen = clen - hdr;
        if (h.cmsg_level == SOL_UDP && h.cmsg_type == UDP_GRO) {
            int gs;
            if (!have_gro && vlen >= sizeof(gs)) {
                memcpy(&gs, v, sizeof(gs));
                gro = gs > 0 ? (size_t)gs : 0;
                have_gro = 1;
            }
        } else if (h.cmsg_level == IPPROTO_IP && h.cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            if (!m->has_dst && vlen >= sizeof(pi)) {
                memcpy(&pi, v, sizeof(pi));
                set_dst4(m, (const uint8_t *)&pi.ipi_addr, bound);
            }
        } else if (h.cmsg_level == IPPROTO_IPV6 && h.cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            if (!m->has_dst && vlen >= sizeof(pi)) {
                memcpy(&pi, v, sizeof(pi));
                const uint8_t *ip = (const uint8_t *)&pi.ipi6_addr;
                if (memcmp(ip, mapped, sizeof(mapped)) == 0) {
                    set_dst4(m, ip + 12, bound);
                } else {
                    m->dst.family = TERN_AF_INET6;
                    memcpy(m->dst.ip, ip, 16);
                    m->dst.port = bound ? bound->port : 0;
                    m->has_dst = 1;
                }
            }
        } else if (h.cmsg_level == IPPROTO_IP && h.cmsg_type == IP_TOS) {
            if (!m->has_tos && vlen >= 1) { /* one byte (IP_RECVTOS) */
                m->tos = v[0];
                m->has_tos = 1;
            }
        } else if (h.cmsg_level == IPPROTO_IPV6 && h.cmsg_type == IPV6_TCLASS) {
            int tc;
            if (!m->has_tos && vlen >= sizeof(tc)) {
                memcpy(&tc, v, sizeof(tc));
                m->tos = (uint8_t)tc;
                m->has_tos = 1;
            }
        }
        size_t step = CMSG_ALIGN(clen); /* clen <= ctl_len: cannot wrap */
        if (step > ctl_len - off) break;  /* the last one may lack its padding */
        off += step;
    }
    m->local = m->has_dst ? &m->dst : bound;
    if (gro == 0 || gro >= len) { /* one datagram (an empty one too) */
        m->seg = len;
        m->count = 1;
    } else {
        m->seg = gro;
        m->count = len / gro + (len % gro != 0);
    }
}
