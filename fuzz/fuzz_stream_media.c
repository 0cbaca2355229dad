/*
 * libFuzzer target for tern stream's parsers of peer input (src/tools/stream_media.c): what a
 * sender (tern mode) or anyone who reaches a --udp-in port (UDP mode) controls. The input is cut
 * into records (a length byte pair, then that many bytes); each record goes through the frame
 * and end message parsers, into the receiver's statistics when it parses, and through UDP
 * reassembly; the whole input also goes through the MPEG-TS cutter 188 bytes at a time (what
 * --ts reads from stdin). Checked: a parsed frame's size matches the record; a completed UDP
 * frame was started by a part of the same number; the statistics never hold more records than
 * their budget; the cutter's frames are whole packets and never over STREAM_MAX_FRAME; the
 * summary's counts (shown, undecodable, late, lost) add up to the frame count.
 */
#include <stdlib.h>
#include <string.h>

#include "tools/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static stream_udp_rx rx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stream_stats st;
    stream_stats_init(&st);
    st.max_frames = 4096; /* small, so that the budget is reached */
    stream_udp_rx_init(&rx);
    size_t off = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (len > size - off) len = size - off;
        const uint8_t *p = data + off;
        off += len;
        stream_hdr h;
        uint32_t n;
        if (stream_hdr_get(p, len, &h) == 0) {
            if ((size_t)h.size + STREAM_HDR_LEN != len) abort();
            int corrupt = stream_check(p + STREAM_HDR_LEN, h.size, h.num, 0) != 0;
            stream_stats_frame(&st, &h, (uint64_t)len * 1000003u, corrupt);
        }
        (void)stream_end_get(p, len, &n);
        int corrupt = 0;
        if (stream_udp_rx_datagram(&rx, p, len, &h, &corrupt) == 1) {
            if (len < STREAM_UDP_HDR || h.size > STREAM_MAX_FRAME) abort();
            stream_stats_frame(&st, &h, 5, corrupt);
        }
        if (st.n > st.max_frames || st.cap > st.max_frames) abort();
    }
    stream_summary s;
    if (stream_stats_summary(&st, 0, &s) == 0 &&
        (s.ontime + s.undecodable + s.late + s.lost != s.frames ||
         s.arrived_ontime != s.ontime + s.undecodable))
        abort();
    stream_stats_free(&st);

    stream_ts t;
    stream_ts_init(&t, size && data[0] < 8 ? data[0] : -1);
    for (size_t i = 0; i + STREAM_TS_PACKET <= size; i += STREAM_TS_PACKET) {
        const uint8_t *out;
        size_t ol;
        int key;
        int r = stream_ts_packet(&t, data + i, &out, &ol, &key);
        if (r == 1 && (ol == 0 || ol % STREAM_TS_PACKET || ol > STREAM_MAX_FRAME)) abort();
    }
    const uint8_t *out;
    size_t ol;
    int key;
    if (stream_ts_flush(&t, &out, &ol, &key) && (ol == 0 || ol % STREAM_TS_PACKET)) abort();
    stream_ts_free(&t);
    return 0;
}
