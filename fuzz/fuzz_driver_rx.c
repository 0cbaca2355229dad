/*
 * libFuzzer target for the driver's receive path (src/driver/rxmsg.c, drv_rx_parse): how a
 * message recvmmsg returned is read, its control messages (UDP_GRO segment size, IP_PKTINFO /
 * IPV6_PKTINFO destination, IP_TOS / IPV6_TCLASS) and the split of a GRO super-datagram into
 * datagrams: the code the batched UDP module (udp.c) and the driver loop (io.c) run for every
 * message they receive.
 *
 * The input: a u16 message length (the bytes "received"), a byte of control-buffer options,
 * then control messages, each a selector byte and its values: laid out with CMSG_SPACE /
 * CMSG_LEN / CMSG_DATA as the kernel lays them out, or with a wrong cmsg_len, a value too short,
 * an unknown level and type, and a buffer cut anywhere. Both the message and the control buffer
 * live in heap blocks of exactly their size, so any read past either is an ASan report.
 * Checked: the datagrams, walked the way io.c walks them, are `count` pieces of `seg` bytes (the
 * last may be shorter) that cover the message exactly, each read whole; and for a well-formed
 * buffer, the values found are the first of each kind that was put in (the GRO size only when it
 * splits the message).
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "driver/driver_int.h" /* drv_rx_parse, and SOL_UDP / UDP_GRO where libc lacks them */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct rd {
    const uint8_t *p, *end;
} rd;

static uint8_t u8(rd *r)
{
    return r->p < r->end ? *r->p++ : 0;
}

static int recognised(int level, int type)
{
    return (level == SOL_UDP && type == UDP_GRO) || (level == IPPROTO_IP && type == IP_PKTINFO) ||
           (level == IPPROTO_IPV6 && type == IPV6_PKTINFO) ||
           (level == IPPROTO_IP && type == IP_TOS) || (level == IPPROTO_IPV6 && type == IPV6_TCLASS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = {data, data + size};
    size_t len = (size_t)u8(&r) << 8;
    len |= u8(&r);
    uint8_t opts = u8(&r);

    /* the control buffer, built in an aligned scratch area */
    static union {
        struct cmsghdr align;
        uint8_t b[4096];
    } scratch;
    memset(scratch.b, 0xa5, sizeof(scratch.b));
    size_t off = 0, last_pad = 0;
    int well_formed = 1;
    /* what a correct reader must find in a well-formed buffer */
    int want_gro_set = 0, want_dst = 0, want_tos = 0;
    int want_gro = 0;
    uint8_t want_ip[16];
    int want_family = 0;
    uint8_t want_tos_v = 0;
    while (r.p < r.end) {
        uint8_t sel = u8(&r);
        uint8_t val[64];
        size_t vlen = 0;
        int pend_gro = 0x7fffffff, pend_family = 0, pend_tos = -1; /* what this entry tells */
        uint8_t pend_ip[16] = {0};
        int level, type;
        switch (sel & 7) {
        case 0: { /* UDP_GRO: an int, sometimes negative or zero */
            int gs = (int)((unsigned)u8(&r) << 8 | u8(&r));
            if (sel & 0x80) gs = -gs;
            level = SOL_UDP, type = UDP_GRO;
            memcpy(val, &gs, sizeof(gs));
            vlen = sizeof(gs);
            pend_gro = gs;
            break;
        }
        case 1: { /* IP_PKTINFO */
            struct in_pktinfo pi;
            memset(&pi, 0, sizeof(pi));
            pi.ipi_ifindex = u8(&r);
            uint8_t ip[4] = {u8(&r), u8(&r), u8(&r), u8(&r)};
            memcpy(&pi.ipi_addr, ip, 4);
            memcpy(&pi.ipi_spec_dst, ip, 4);
            level = IPPROTO_IP, type = IP_PKTINFO;
            memcpy(val, &pi, sizeof(pi));
            vlen = sizeof(pi);
            pend_family = TERN_AF_INET;
            memcpy(pend_ip, ip, 4);
            break;
        }
        case 2: { /* IPV6_PKTINFO: a v6 address, or a v4-mapped one */
            struct in6_pktinfo pi;
            memset(&pi, 0, sizeof(pi));
            uint8_t ip[16];
            memset(ip, 0, sizeof(ip));
            if (sel & 0x40) {
                ip[10] = ip[11] = 0xff;
                for (int k = 12; k < 16; k++) ip[k] = u8(&r);
            } else {
                for (int k = 0; k < 16; k++) ip[k] = u8(&r);
            }
            memcpy(&pi.ipi6_addr, ip, 16);
            pi.ipi6_ifindex = u8(&r);
            level = IPPROTO_IPV6, type = IPV6_PKTINFO;
            memcpy(val, &pi, sizeof(pi));
            vlen = sizeof(pi);
            static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            if (memcmp(ip, mapped, 12) == 0) {
                pend_family = TERN_AF_INET;
                memcpy(pend_ip, ip + 12, 4);
            } else {
                pend_family = TERN_AF_INET6;
                memcpy(pend_ip, ip, 16);
            }
            break;
        }
        case 3: /* IP_TOS: one byte */
            level = IPPROTO_IP, type = IP_TOS;
            val[0] = u8(&r);
            vlen = 1;
            pend_tos = val[0];
            break;
        case 4: { /* IPV6_TCLASS: an int */
            int tc = u8(&r);
            level = IPPROTO_IPV6, type = IPV6_TCLASS;
            memcpy(val, &tc, sizeof(tc));
            vlen = sizeof(tc);
            pend_tos = tc;
            break;
        }
        case 5: /* something else: any level and type that is not one of the above */
            level = u8(&r), type = u8(&r);
            if (recognised(level, type)) type += 50;
            vlen = u8(&r) % sizeof(val);
            for (size_t k = 0; k < vlen; k++) val[k] = u8(&r);
            break;
        case 6: /* a recognised kind whose value is too short: skipped by a reader */
            level = (sel & 0x10) ? IPPROTO_IPV6 : SOL_UDP;
            type = (sel & 0x10) ? IPV6_PKTINFO : UDP_GRO;
            vlen = u8(&r) % 4;
            for (size_t k = 0; k < vlen; k++) val[k] = u8(&r);
            break;
        default: /* a header whose length says anything */
            level = (sel & 0x10) ? IPPROTO_IP : SOL_UDP;
            type = (sel & 0x10) ? IP_PKTINFO : UDP_GRO;
            vlen = 0;
            break;
        }
        if (off + CMSG_SPACE(vlen) > sizeof(scratch.b)) break;
        struct cmsghdr *c = (struct cmsghdr *)(void *)(scratch.b + off);
        c->cmsg_level = level;
        c->cmsg_type = type;
        c->cmsg_len = CMSG_LEN(vlen);
        memcpy(CMSG_DATA(c), val, vlen);
        if ((sel & 7) == 7) { /* any length at all */
            c->cmsg_len = (size_t)u8(&r) << 8 | u8(&r);
            if (sel & 0x20) c->cmsg_len = ~(size_t)0 - u8(&r);
            well_formed = 0;
        } else if (sel & 0x08) { /* a length a few bytes off */
            c->cmsg_len = CMSG_LEN(vlen) + (size_t)(u8(&r) % 16) - 8;
            if (c->cmsg_len != CMSG_LEN(vlen)) well_formed = 0;
        }
        off += CMSG_SPACE(vlen);
        last_pad = CMSG_SPACE(vlen) - CMSG_LEN(vlen);
        if (pend_gro != 0x7fffffff && !want_gro_set) want_gro_set = 1, want_gro = pend_gro;
        if (pend_family && !want_dst) {
            want_dst = 1;
            want_family = pend_family;
            memcpy(want_ip, pend_ip, 16);
        }
        if (pend_tos >= 0 && !want_tos) want_tos = 1, want_tos_v = (uint8_t)pend_tos;
    }
    size_t ctl_len = off;
    switch (opts & 3) {
    case 1: /* cut short */
        ctl_len = off > (size_t)(opts >> 2) ? off - (opts >> 2) : 0;
        if (ctl_len != off) well_formed = 0;
        break;
    case 2: /* without the last one's padding, as the kernel may leave it: still well-formed */
        ctl_len = off - last_pad;
        break;
    case 3: /* garbage after the last one */
        ctl_len = off + (opts >> 2);
        well_formed = 0;
        break;
    default:
        break;
    }
    if (ctl_len > sizeof(scratch.b)) ctl_len = sizeof(scratch.b);
    uint8_t *ctl = ctl_len ? malloc(ctl_len) : NULL;
    if (ctl_len) memcpy(ctl, scratch.b, ctl_len);
    uint8_t *msg = malloc(len ? len : 1);
    for (size_t k = 0; k < len; k++) msg[k] = (uint8_t)k;

    tern_addr bound;
    tern_addr_ipv4(&bound, 127, 0, 0, 1, 4433);
    drv_rxmsg m;
    drv_rx_parse(len, ctl, ctl_len, &bound, &m);

    /* the datagrams, walked as io.c walks them: each read whole, together exactly the message */
    if (m.count < 1) abort();
    if (m.count == 1) {
        if (m.seg != len) abort();
    } else {
        if (m.seg == 0 || m.seg >= len) abort();
        size_t pieces = 0, covered = 0;
        unsigned sum = 0;
        for (size_t o = 0; o < len; o += m.seg) {
            size_t n = len - o < m.seg ? len - o : m.seg;
            if (o != covered || n == 0 || (n != m.seg && o + n != len)) abort();
            for (size_t k = 0; k < n; k++) sum += msg[o + k];
            covered += n;
            pieces++;
        }
        if (covered != len || pieces != m.count) abort();
        (void)sum;
    }
    if (m.local != (m.has_dst ? &m.dst : &bound)) abort();
    if (m.has_dst && m.dst.port != bound.port) abort();

    /* a well-formed buffer: the first value of each kind, as put in */
    if (well_formed) {
        size_t want_seg = (want_gro_set && want_gro > 0 && (size_t)want_gro < len) ? (size_t)want_gro
                                                                                   : len;
        if (m.seg != want_seg) abort();
        if (m.has_dst != want_dst) abort();
        if (want_dst && (m.dst.family != want_family ||
                         memcmp(m.dst.ip, want_ip, want_family == TERN_AF_INET ? 4 : 16) != 0))
            abort();
        if (m.has_tos != want_tos || (want_tos && m.tos != want_tos_v)) abort();
    }
    free(ctl);
    free(msg);
    return 0;
}
