/*
 * tern stream: the live-video model shared by its sender and receiver, in tern mode and in UDP
 * mode (the one that goes through srt-live-transmit). stream_media.c holds the parts that touch
 * no socket and no clock, so that unit tests and a fuzz target reach them: the frame header and
 * the UDP datagram format, the payload pattern that lets the receiver check every byte, the
 * synthetic encoder, the MPEG-TS cutter, the UDP reassembly and the receiver's statistics.
 * cmd_stream.c (tern mode) and stream_udp.c (UDP mode) do the I/O.
 *
 * Wire formats (all integers big-endian), the same frames in both modes:
 *   frame message (tern mode: one message of the media flow per frame)
 *     'F' u8 flags (1 keyframe, 2 MPEG-TS payload) | u32 frame number | u64 capture time (ns,
 *     CLOCK_REALTIME of the sender) | u32 payload size | u32 frame interval (us) | payload
 *   end message (tern mode: on a second, reliable flow, once the last frame was queued)
 *     'E' | u32 frames the sender produced (numbered 0..n-1)
 *   UDP datagram (UDP mode: a frame cut into datagrams of STREAM_UDP_MAX bytes at most, so that
 *   srt-live-transmit carries each one as one SRT packet)
 *     'U' u8 flags | u32 frame number | u64 capture | u32 payload size | u32 interval (us) |
 *     u16 index | u16 count | payload bytes: part i < count-1 holds [i * L, (i+1) * L) where L is
 *     its own length (every part but the last is full), the last one the payload's tail
 *   UDP end datagram: 'E' | u32 frames produced (sent 5 times, 20 ms apart)
 * Synthetic payload byte j of frame n is stream_pattern(n, j): the receiver checks every byte it
 * gets (a frame that arrives changed counts as corrupt, never as on time).
 */
#ifndef TERN_TOOLS_STREAM_H
#define TERN_TOOLS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_HDR_LEN 22           /* 'F' frame header */
#define STREAM_UDP_HDR 26           /* 'U' datagram header */
#define STREAM_UDP_MAX 1316         /* 7 x 188: SRT live mode's default payload size */
#define STREAM_MAX_FRAME (8u << 20) /* payload bytes of one frame, at most (either side) */
#define STREAM_MAX_PARTS 8192       /* datagrams of one frame, at most (UDP mode) */
#define STREAM_TS_PACKET 188

enum { STREAM_F_KEY = 1, STREAM_F_TS = 2 };

typedef struct stream_hdr {
    uint32_t num;         /* frame number, from 0 */
    uint8_t flags;        /* STREAM_F_* */
    uint64_t capture_ns;  /* CLOCK_REALTIME at capture (same host in the netlab: clocks agree) */
    uint32_t size;        /* payload bytes */
    uint32_t interval_us; /* the stream's frame interval */
} stream_hdr;

/* 'F' header into p[STREAM_HDR_LEN]. */
void stream_hdr_put(uint8_t *p, const stream_hdr *h);
/* Parses a frame message: 0 and *h when p[0..len) is 'F', a header and exactly h->size payload
 * bytes (size <= STREAM_MAX_FRAME); -1 otherwise. */
int stream_hdr_get(const uint8_t *p, size_t len, stream_hdr *h);
/* 'E' message: 5 bytes into p; stream_end_get returns 0 and the count, -1 when malformed. */
void stream_end_put(uint8_t *p, uint32_t frames);
int stream_end_get(const uint8_t *p, size_t len, uint32_t *frames);

/* The synthetic payload: byte j of frame n. stream_fill writes bytes [off, off+len) of frame n;
 * stream_check returns 0 when p holds exactly them. */
uint8_t stream_pattern(uint32_t n, uint32_t j);
void stream_fill(uint8_t *p, size_t len, uint32_t n, uint32_t off);
int stream_check(const uint8_t *p, size_t len, uint32_t n, uint32_t off);

/* ---- the synthetic encoder: frames at fps, a keyframe every gop frames (or when asked), sizes
 * that average bitrate: a keyframe is STREAM_KEY_RATIO times a P-frame, each size varied by up
 * to +-20% (P) or +-10% (keyframe) from a seeded generator, so the same seed gives the same
 * frames. The bitrate may change between frames (tern mode follows the target rate). */
#define STREAM_KEY_RATIO 5
typedef struct stream_gen {
    uint64_t bitrate; /* bits per second of payload now */
    unsigned fps, gop;
    uint64_t rng;       /* xorshift64 state */
    unsigned since_key; /* frames since the last keyframe (gop: the next one is a keyframe) */
    int force_key;      /* the next frame is a keyframe (a keyframe request, a flush) */
} stream_gen;
void stream_gen_init(stream_gen *g, uint64_t bitrate, unsigned fps, unsigned gop, uint64_t seed);
/* The next frame's payload size; *key says whether it is a keyframe. */
size_t stream_gen_next(stream_gen *g, int *key);

/* ---- MPEG-TS from stdin: 188-byte packets cut into frames. A frame is everything from one
 * packet of the video PID with payload_unit_start set up to the next one (the other PIDs'
 * packets in between ride along, so the receiver can write out a playable stream); it is a
 * keyframe when that first packet's adaptation field has random_access_indicator set. The video
 * PID is --ts-pid, else the first video stream of the first program in the PAT/PMT (stream types
 * MPEG-1/2, MPEG-4, H.264, HEVC); without one, a frame is every STREAM_TS_CHUNK packets. */
#define STREAM_TS_CHUNK 64
typedef struct stream_ts {
    int pid;       /* the video PID, -1 until known */
    int pid_fixed; /* from --ts-pid */
    int pmt_pid;   /* -1 until the PAT named it */
    uint8_t *buf;  /* the frame being cut */
    size_t len, cap;
    uint8_t *done; /* the frame handed out last (valid until the next call) */
    size_t done_cap;
    int started;      /* buf holds the video PID's start of a frame */
    int key;          /* that packet had random_access_indicator */
    unsigned packets; /* in buf */
    uint64_t bad;     /* packets without the 0x47 sync byte: dropped */
} stream_ts;
void stream_ts_init(stream_ts *t, int pid); /* pid < 0: from the PMT */
void stream_ts_free(stream_ts *t);
/* Takes one 188-byte packet. Returns 1 when it closed a frame: *out, *out_len (valid until the
 * next call) and *key describe it; 0 when not; -1 out of memory. */
int stream_ts_packet(stream_ts *t, const uint8_t *pkt, const uint8_t **out, size_t *out_len,
                     int *key);
/* At the end of the input: the last frame (1), or 0 when nothing is left. */
int stream_ts_flush(stream_ts *t, const uint8_t **out, size_t *out_len, int *key);

/* ---- the receiver's statistics: one record per frame number, grown on demand up to
 * max_frames (a budget: a peer that names larger frame numbers gets them refused and counted,
 * never a larger allocation). */
typedef struct stream_rec {
    uint64_t capture_ns; /* the sender's capture time (CLOCK_REALTIME) */
    uint64_t latency_ns; /* delivery (the last byte) less capture */
    uint8_t state;       /* 0 not (yet) delivered, 1 delivered, 2 delivered corrupt */
    uint8_t key;
} stream_rec;
typedef struct stream_stats {
    stream_rec *rec;
    uint32_t n, cap;      /* records in use (highest frame number + 1), allocated */
    uint32_t max_frames;  /* budget (default STREAM_MAX_FRAMES) */
    uint32_t total;       /* frames the sender produced, from its end message (0: unknown) */
    uint64_t interval_ns; /* from the frames' headers */
    uint64_t bytes;       /* payload bytes delivered */
    uint64_t refused;     /* frames over the budget */
    uint64_t dup;         /* frames delivered twice (counted once) */
    uint64_t skipped;     /* tern mode: frames the transport skipped (on_msg_skipped) */
    uint64_t early;       /* frames whose capture time is after their delivery (clocks apart):
                             counted with latency 0 */
} stream_stats;
#define STREAM_MAX_FRAMES (1u << 21) /* 23 hours at 25 fps; 24 bytes each: 48 MiB at most */

void stream_stats_init(stream_stats *s);
void stream_stats_free(stream_stats *s);
/* Records frame h delivered at now_ns (CLOCK_REALTIME); corrupt: its bytes were wrong. Returns
 * 0, or -1 when refused (budget, or out of memory). */
int stream_stats_frame(stream_stats *s, const stream_hdr *h, uint64_t now_ns, int corrupt);

typedef struct stream_summary {
    uint32_t frames;      /* the sender's count, else the highest frame number seen + 1 */
    uint32_t ontime;      /* shown: see stream_stats_summary */
    uint32_t undecodable; /* arrived in time, but a frame it needs did not */
    uint32_t late, lost, corrupt, keyframes;
    uint32_t arrived_ontime; /* arrived intact within playout, decodable or not */
    double ontime_pct;
    double playout_ms; /* the budget used */
    double owd_ms;     /* the smallest latency of a frame: the one-way delay plus that frame's
                          time on the wire */
    double p50_ms, p99_ms, max_ms; /* over the frames delivered (on time or late) */
    double stall_ms;               /* see stream_stats_summary */
} stream_summary;
/* Classifies every frame 0..frames-1 as one of: on time (shown: decodable by its display time,
 * capture + playout_ns), undecodable (arrived intact by then, but a frame it needs had not),
 * late (arrived after), lost (never delivered, skipped, or corrupt). One decoding rule for every
 * transport: a keyframe is decodable once it arrived, a P-frame once it and the frame before it
 * are decodable; a late frame is not shown but still serves as a reference from when it came.
 * So a transport that loses a frame pays for the rest of its group of pictures, as a decoder
 * would, unless a keyframe comes sooner. playout_ns 0: the smallest latency seen + 100 ms.
 * Stall time: the picture freezes when the next frame to show is not there; for each pair of
 * consecutive shown frames (and from the stream's first frame to the first shown one, and from
 * the last shown one to the end) whose capture times (frame numbers x interval) lie more than 2
 * intervals apart, the gap less one interval is counted: one missing frame alone is not a
 * stall. Returns -1 out of memory. */
int stream_stats_summary(const stream_stats *s, uint64_t playout_ns, stream_summary *out);

/* ---- UDP mode's reassembly: which datagrams of the frames in progress came, in a fixed table
 * (a budget: at most STREAM_UDP_SLOTS frames at once; a frame that does not fit pushes the
 * oldest out, which counts as incomplete). */
#define STREAM_UDP_SLOTS 64
typedef struct stream_udp_slot {
    int used;
    stream_hdr h;
    uint16_t count, got;
    int corrupt;
    uint8_t seen[STREAM_MAX_PARTS / 8];
} stream_udp_slot;
typedef struct stream_udp_rx {
    stream_udp_slot slot[STREAM_UDP_SLOTS];
    uint64_t datagrams, malformed, dup, evicted, done_frames;
    uint32_t end_frames; /* from an 'E' datagram (0: none yet) */
    int ended;
} stream_udp_rx;
void stream_udp_rx_init(stream_udp_rx *r);
/* Takes one datagram. Returns 1 when it completed a frame (*h, *corrupt set), 2 for an end
 * datagram, 0 otherwise (a part taken, a duplicate, or malformed: counted). */
int stream_udp_rx_datagram(stream_udp_rx *r, const uint8_t *p, size_t len, stream_hdr *h,
                           int *corrupt);
/* Cuts frame h (payload) into datagrams of at most dgram_max bytes: returns how many; part i
 * is written by stream_udp_part into out (returns its length). */
unsigned stream_udp_parts(const stream_hdr *h, size_t dgram_max);
size_t stream_udp_part(const stream_hdr *h, const uint8_t *payload, unsigned i, size_t dgram_max,
                       uint8_t *out);

/* Bit rates: "800k", "1.1M", "10M", "2500000" (decimal units). Returns 0, or -1. */
int stream_parse_rate(const char *text, uint64_t *bps);

/* ---- the sender's frame source (stream_src.c): the synthetic encoder on a clock, or MPEG-TS
 * read from stdin; each frame comes out as a whole 'F' message (header and payload). */
typedef struct stream_source {
    int ts; /* MPEG-TS from stdin, else synthetic */
    stream_gen gen;
    stream_ts tsr;
    uint64_t interval_ns;      /* 1 s / fps */
    uint64_t t0_mono, t0_real; /* the first frame's capture: monotonic and CLOCK_REALTIME */
    uint32_t next;             /* the next frame's number */
    uint32_t limit;            /* synthetic: frames to produce (duration x fps) */
    uint8_t *buf;              /* the last frame built: header and payload */
    size_t cap;
    uint8_t in[64 * STREAM_TS_PACKET]; /* stdin bytes not yet cut */
    size_t in_len;
    uint64_t ts_capture; /* CLOCK_REALTIME when the TS frame being cut began */
    int eof;             /* stdin ended (TS), or the synthetic limit was reached */
    uint64_t frames, bytes, keyframes;
} stream_source;

/* fps, gop, bitrate, seed for the synthetic encoder; duration_s of frames (0: ts only); ts_pid
 * (-1: from the PMT). Returns 0, or -1 out of memory. */
int stream_source_init(stream_source *s, int ts, uint64_t bitrate, unsigned fps, unsigned gop,
                       uint64_t seed, double duration_s, int ts_pid);
void stream_source_free(stream_source *s);
/* Synthetic: nanoseconds (monotonic) until the next frame is due, 0 when due now;
 * TERN_TIME_NEVER-like UINT64_MAX for TS or at the end. */
uint64_t stream_source_wait(const stream_source *s, uint64_t now_mono);
/* The next frame when one is ready (synthetic: due at now_mono; TS: stdin_readable says
 * poll() found stdin readable, and one read() is done): returns 1 and *msg, *len (the whole
 * 'F' message, valid until the next call; *h its header); 0 when none is ready yet; -1 at the
 * end of the stream; -2 out of memory or a read error (errno). */
int stream_source_next(stream_source *s, uint64_t now_mono, uint64_t now_real, int stdin_readable,
                       stream_hdr *h, const uint8_t **msg, size_t *len);
/* Builds again the frame last returned as a keyframe of the synthetic encoder (the transport
 * refused the P-frame because its reference was lost): same number and capture time. TS
 * frames are only marked. Returns 0, or -2 out of memory. */
int stream_source_rekey(stream_source *s, stream_hdr *h, const uint8_t **msg, size_t *len);
/* CLOCK_REALTIME in nanoseconds. */
uint64_t stream_realtime_ns(void);

/* ---- the command's options (cmd_stream.c parses them; usage() there documents them) */
enum { STREAM_FEC_OFF, STREAM_FEC_FIXED, STREAM_FEC_ADAPTIVE };
typedef struct stream_opts {
    /* sender */
    uint64_t bitrate, min_bitrate; /* --bitrate (1M), --min-bitrate (bitrate / 8) */
    unsigned fps, gop;             /* --fps 25, --gop 50 */
    double duration_s;             /* --duration 30 (synthetic frames) */
    uint64_t seed;                 /* --seed 1 */
    int ts, ts_pid;                /* --ts (MPEG-TS from stdin), --ts-pid (-1: from the PMT) */
    int64_t latency_ms;            /* --latency: each frame's deadline in the core; -1 auto */
    int fec;                       /* --fec off|fixed|adaptive (adaptive) */
    int adapt;                     /* follow the target rate (1; --no-adapt) */
    const char *udp_out;           /* --udp-out HOST:PORT: UDP mode */
    uint64_t udp_size;             /* --udp-size: datagram bytes at most (1316) */
    /* receiver */
    const char *udp_in;     /* --udp-in ADDR:PORT: UDP mode */
    uint64_t playout_ms;    /* --playout (0: smallest latency + 100 ms) */
    const char *out;        /* --out FILE: MPEG-TS frames written in order (tern mode) */
    uint64_t idle_ms;       /* --idle-timeout: UDP mode's end without an end datagram */
    const char *frames_log; /* --frames-log FILE: a line per frame at the end */
    int quiet;
} stream_opts;

/* UDP mode (stream_udp.c): the sender and the receiver. Return the exit code. */
int stream_udp_send(const stream_opts *o);
int stream_udp_recv(const stream_opts *o);
/* The receiver's report: a human line and a "CMD: result mode=MODE key=value ..." line (extra
 * appended, may be ""), on stdout. Returns 0, or 1 when no frame came at all. */
int stream_report(const char *cmd, const char *mode, const stream_stats *st, uint64_t playout_ns,
                  const char *extra);
/* --frames-log: "FRAME KEY STATE LATENCY_MS" per frame (STATE: ok, corrupt, lost; LATENCY -1 when
 * lost). Returns 0, or -1 after printing why it cannot write path. */
int stream_frames_log(const char *cmd, const char *path, const stream_stats *st);

#endif
