/*
 * tern-linkem: a user-space link emulator for netlab.
 *
 * The kernels the lab runs on have no netem, so this process stands in for it. It sits in a
 * namespace of its own between two interfaces (veth ends), reads every Ethernet frame that arrives
 * on one with an AF_PACKET socket and writes it out of the other, so the two sides see one plain
 * Ethernet segment and any IP traffic (TCP, UDP, ICMP) crosses it. Each direction has its own
 * impairments and its own seeded PRNG:
 *
 *   ingress -> blackhole? -> drop-tail queue in front of a serializer at `rate`
 *           -> loss (random or Gilbert-Elliott) -> corruption -> duplication
 *           -> one-way delay + jitter (+ an extra hold for reordered packets)
 *           -> release heap -> blackhole? -> egress
 *
 * The queue is accounted in bytes: the backlog is the time the serializer is still busy times the
 * rate, so admitting a packet is O(1). Frames that are not IP (ARP) take the delay and the
 * blackholes but no random impairment, so neighbour discovery does not distort measured loss.
 * Packets wait in a binary min-heap keyed on release time (then arrival order); the loop sleeps in
 * ppoll() until the earliest release or the next frame, with the timer slack set to 1 ns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL
#define FRAME_MAX 65536
#define WIRE_PKT 1514          /* bytes one "packet" of a queue=Np limit stands for */
#define MAX_BLACKHOLES 16
#define MAX_HELD 262144        /* packets held per direction before new ones are dropped */
#define READ_BATCH 64          /* frames read per socket per wake-up */

/* ---------------------------------------------------------------- PRNG (xoshiro256**) */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in [0, 1). */
static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static bool rng_chance(struct rng *r, double p)
{
	return p > 0 && rng_unit(r) < p;
}

/* ---------------------------------------------------------------- parameters */

struct window {
	uint64_t start, len; /* ns since start of the emulator */
};

struct params {
	uint64_t delay;           /* one-way, ns */
	uint64_t jitter;          /* ns, uniform in [-jitter, +jitter], order kept */
	uint64_t rate;            /* bit/s, 0 = unlimited */
	uint64_t queue;           /* bytes, 0 = default (100 ms at rate, at least 16 KiB) */
	double loss;              /* probability */
	bool ge;                  /* Gilbert-Elliott instead of `loss` */
	double ge_p, ge_r;        /* P(good->bad), P(bad->good) per packet */
	double ge_bad, ge_good;   /* loss probability in each state */
	double reorder;           /* probability a packet is held back */
	uint64_t reorder_gap;     /* how long it is held back, ns */
	double dup, corrupt;      /* probabilities */
	uint64_t on, off;         /* periodic outage: up `on`, then down `off` (ns); 0 = none */
	struct window bh[MAX_BLACKHOLES];
	int nbh;
};

static int parse_time(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	double mult = (double)NS_PER_MS;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		mult = (double)NS_PER_MS;
	else if (strcmp(end, "s") == 0)
		mult = (double)NS_PER_S;
	else if (strcmp(end, "us") == 0)
		mult = 1e3;
	else if (strcmp(end, "ns") == 0)
		mult = 1;
	else
		return -1;
	*out = (uint64_t)(v * mult + 0.5);
	return 0;
}

static int parse_rate(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	double mult;
	if (*end == '\0' || strcmp(end, "bit") == 0)
		mult = 1;
	else if (strcmp(end, "kbit") == 0)
		mult = 1e3;
	else if (strcmp(end, "mbit") == 0)
		mult = 1e6;
	else if (strcmp(end, "gbit") == 0)
		mult = 1e9;
	else
		return -1;
	*out = (uint64_t)(v * mult + 0.5);
	return 0;
}

static int parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return -1;
	double mult;
	if (*end == '\0' || strcmp(end, "b") == 0)
		mult = 1;
	else if (strcmp(end, "kb") == 0)
		mult = 1024;
	else if (strcmp(end, "mb") == 0)
		mult = 1024 * 1024;
	else if (strcmp(end, "p") == 0)
		mult = WIRE_PKT;
	else
		return -1;
	*out = (uint64_t)(v * mult + 0.5);
	return 0;
}

/* A percentage: "1%", "0.5" (both percent). */
static int parse_pct(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0 || v > 100)
		return -1;
	if (*end != '\0' && strcmp(end, "%") != 0)
		return -1;
	*out = v / 100.0;
	return 0;
}

/* Splits "a,b,c" in place into at most n fields; returns how many. */
static int split(char *s, char sep, char **f, int n)
{
	int k = 0;
	while (k < n) {
		f[k++] = s;
		char *c = strchr(s, sep);
		if (!c)
			break;
		*c = '\0';
		s = c + 1;
	}
	return k;
}

static int parse_kv(struct params *p, const char *key, char *val)
{
	char *f[4] = {NULL, NULL, NULL, NULL};
	int n;
	if (strcmp(key, "delay") == 0)
		return parse_time(val, &p->delay);
	if (strcmp(key, "jitter") == 0)
		return parse_time(val, &p->jitter);
	if (strcmp(key, "rate") == 0)
		return parse_rate(val, &p->rate);
	if (strcmp(key, "queue") == 0)
		return parse_bytes(val, &p->queue);
	if (strcmp(key, "loss") == 0) {
		p->ge = false;
		return parse_pct(val, &p->loss);
	}
	if (strcmp(key, "dup") == 0)
		return parse_pct(val, &p->dup);
	if (strcmp(key, "corrupt") == 0)
		return parse_pct(val, &p->corrupt);
	if (strcmp(key, "reorder") == 0) {
		n = split(val, '/', f, 2);
		p->reorder_gap = 10 * NS_PER_MS;
		if (parse_pct(f[0], &p->reorder) < 0)
			return -1;
		return n == 2 ? parse_time(f[1], &p->reorder_gap) : 0;
	}
	if (strcmp(key, "ge") == 0) {
		n = split(val, '/', f, 4);
		if (n < 2 || parse_pct(f[0], &p->ge_p) < 0 || parse_pct(f[1], &p->ge_r) < 0)
			return -1;
		p->ge_bad = 1.0;
		p->ge_good = 0.0;
		if (n >= 3 && parse_pct(f[2], &p->ge_bad) < 0)
			return -1;
		if (n >= 4 && parse_pct(f[3], &p->ge_good) < 0)
			return -1;
		p->ge = true;
		return 0;
	}
	if (strcmp(key, "onoff") == 0) {
		n = split(val, '/', f, 2);
		if (n != 2 || parse_time(f[0], &p->on) < 0 || parse_time(f[1], &p->off) < 0)
			return -1;
		return 0;
	}
	if (strcmp(key, "blackhole") == 0) {
		n = split(val, '/', f, 2);
		if (n != 2 || p->nbh == MAX_BLACKHOLES)
			return -1;
		struct window *w = &p->bh[p->nbh];
		if (parse_time(f[0], &w->start) < 0 || parse_time(f[1], &w->len) < 0)
			return -1;
		p->nbh++;
		return 0;
	}
	return -1;
}

/* A spec is a list of key=value words separated by spaces or commas: "delay=150ms,loss=1%". */
static int parse_spec(struct params *p, const char *spec)
{
	char *copy = strdup(spec);
	if (!copy)
		return -1;
	int rc = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			fprintf(stderr, "tern-linkem: '%s': expected key=value\n", tok);
			rc = -1;
			break;
		}
		*eq = '\0';
		if (parse_kv(p, tok, eq + 1) < 0) {
			fprintf(stderr, "tern-linkem: bad value for '%s'\n", tok);
			rc = -1;
			break;
		}
	}
	free(copy);
	return rc;
}

/* ---------------------------------------------------------------- packets and the release heap */

struct pkt {
	uint64_t t;   /* release time */
	uint64_t seq; /* arrival order, breaks ties */
	uint32_t len;
	unsigned char data[];
};

struct heap {
	struct pkt **v;
	size_t n, cap;
};

static bool pkt_before(const struct pkt *a, const struct pkt *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int heap_push(struct heap *h, struct pkt *p)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		struct pkt **v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!pkt_before(p, h->v[parent]))
			break;
		h->v[i] = h->v[parent];
		i = parent;
	}
	h->v[i] = p;
	return 0;
}

static struct pkt *heap_pop(struct heap *h)
{
	struct pkt *top = h->v[0];
	struct pkt *last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && pkt_before(h->v[c + 1], h->v[c]))
			c++;
		if (!pkt_before(h->v[c], last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = last;
	return top;
}

/* ---------------------------------------------------------------- one direction */

struct stats {
	uint64_t rx, tx, tx_bytes, lost, qdrop, bhdrop, dup, corrupt, reorder, txerr, nonip;
};

struct dir {
	const char *name;
	int in_fd, out_fd;
	struct params p;
	struct rng rng;
	bool ge_bad_state;
	uint64_t link_free;    /* when the serializer finishes what it holds */
	uint64_t last_release; /* keeps jittered packets in order */
	uint64_t seq;
	struct heap held;
	struct stats st;
};

static volatile sig_atomic_t g_stop, g_dump, g_manual_bh;
static uint64_t g_t0;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static bool is_down(const struct dir *d, uint64_t now)
{
	if (g_manual_bh)
		return true;
	uint64_t t = now - g_t0;
	if (d->p.on || d->p.off) {
		uint64_t period = d->p.on + d->p.off;
		if (period && t % period >= d->p.on)
			return true;
	}
	for (int i = 0; i < d->p.nbh; i++)
		if (t >= d->p.bh[i].start && t < d->p.bh[i].start + d->p.bh[i].len)
			return true;
	return false;
}

static bool frame_is_ip(const unsigned char *f, size_t len)
{
	if (len < 14)
		return false;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	return type == ETHERTYPE_IP || type == ETHERTYPE_IPV6;
}

/* Offset of the first byte after the IP header, so a flipped bit lands where an L4 checksum sees
 * it (a damaged IP header is dropped by the first router and teaches nothing). */
static size_t payload_offset(const unsigned char *f, size_t len)
{
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	size_t off = 14;
	if (type == ETHERTYPE_IP && len > off)
		off += (size_t)(f[off] & 0x0f) * 4;
	else if (type == ETHERTYPE_IPV6)
		off += 40;
	return off < len ? off : 14;
}

static bool lose(struct dir *d)
{
	if (!d->p.ge)
		return rng_chance(&d->rng, d->p.loss);
	/* Gilbert-Elliott: move between the states first, then lose with the state's probability. */
	if (d->ge_bad_state) {
		if (rng_chance(&d->rng, d->p.ge_r))
			d->ge_bad_state = false;
	} else if (rng_chance(&d->rng, d->p.ge_p)) {
		d->ge_bad_state = true;
	}
	return rng_chance(&d->rng, d->ge_bad_state ? d->p.ge_bad : d->p.ge_good);
}

static struct pkt *pkt_new(const unsigned char *data, size_t len)
{
	struct pkt *p = malloc(sizeof(*p) + len);
	if (p) {
		p->len = (uint32_t)len;
		memcpy(p->data, data, len);
	}
	return p;
}

static void hold(struct dir *d, struct pkt *p, uint64_t t)
{
	p->t = t;
	p->seq = d->seq++;
	if (d->held.n >= MAX_HELD || heap_push(&d->held, p) < 0) {
		d->st.qdrop++;
		free(p);
	}
}

static void admit(struct dir *d, const unsigned char *data, size_t len, uint64_t now)
{
	d->st.rx++;
	if (is_down(d, now)) {
		d->st.bhdrop++;
		return;
	}
	bool ip = frame_is_ip(data, len);
	uint64_t t = now;
	if (ip && d->p.rate) {
		/* The backlog is what the serializer still has to send, in bytes. */
		uint64_t start = d->link_free > now ? d->link_free : now;
		uint64_t backlog = (uint64_t)((double)(start - now) * (double)d->p.rate / 8e9);
		if (backlog + len > d->p.queue) {
			d->st.qdrop++;
			return;
		}
		uint64_t tx = (uint64_t)((double)len * 8e9 / (double)d->p.rate);
		d->link_free = start + tx;
		t = d->link_free;
	}
	if (!ip) {
		d->st.nonip++;
	} else if (lose(d)) {
		d->st.lost++;
		return;
	}
	struct pkt *p = pkt_new(data, len);
	if (!p) {
		d->st.qdrop++;
		return;
	}
	if (ip && rng_chance(&d->rng, d->p.corrupt)) {
		size_t off = payload_offset(p->data, len);
		size_t at = off + (size_t)(rng_unit(&d->rng) * (double)(len - off));
		p->data[at] ^= (unsigned char)(1u << (rng_next(&d->rng) & 7));
		d->st.corrupt++;
	}
	t += d->p.delay;
	if (ip && d->p.jitter) {
		double j = (rng_unit(&d->rng) * 2.0 - 1.0) * (double)d->p.jitter;
		t = (j < 0 && (uint64_t)(-j) > t - now) ? now : (uint64_t)((double)t + j);
	}
	bool reordered = ip && rng_chance(&d->rng, d->p.reorder);
	if (reordered) {
		/* Held back past the packets behind it; later ones do not wait for it. */
		t += d->p.reorder_gap;
		d->st.reorder++;
	} else {
		if (t < d->last_release)
			t = d->last_release;
		d->last_release = t;
	}
	bool dup = ip && rng_chance(&d->rng, d->p.dup);
	struct pkt *copy = dup ? pkt_new(p->data, len) : NULL;
	hold(d, p, t);
	if (copy) {
		d->st.dup++;
		hold(d, copy, t);
	}
}

static void release_due(struct dir *d, uint64_t now)
{
	while (d->held.n > 0 && d->held.v[0]->t <= now) {
		struct pkt *p = heap_pop(&d->held);
		if (is_down(d, now)) {
			d->st.bhdrop++;
		} else {
			ssize_t n;
			do {
				n = send(d->out_fd, p->data, p->len, MSG_DONTWAIT);
			} while (n < 0 && errno == EINTR);
			if (n < 0) {
				d->st.txerr++;
			} else {
				d->st.tx++;
				d->st.tx_bytes += p->len;
			}
		}
		free(p);
	}
}

/* Reads up to READ_BATCH frames; frames we sent ourselves are skipped. */
static void read_frames(struct dir *d, unsigned char *buf)
{
	for (int i = 0; i < READ_BATCH; i++) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(d->in_fd, buf, FRAME_MAX, MSG_DONTWAIT | MSG_TRUNC,
				     (struct sockaddr *)&from, &fl);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (n > FRAME_MAX) {
			d->st.txerr++; /* a GSO super-frame: offloads were left on */
			continue;
		}
		admit(d, buf, (size_t)n, now_ns());
	}
}

/* ---------------------------------------------------------------- sockets */

static int open_if(const char *ifname)
{
	unsigned idx = if_nametoindex(ifname);
	if (!idx) {
		fprintf(stderr, "tern-linkem: no interface %s\n", ifname);
		return -1;
	}
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (fd < 0) {
		perror("tern-linkem: socket(AF_PACKET)");
		return -1;
	}
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				  .sll_ifindex = (int)idx};
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("tern-linkem: bind");
		close(fd);
		return -1;
	}
	struct packet_mreq mr = {.mr_ifindex = (int)idx, .mr_type = PACKET_MR_PROMISC};
	if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0)
		perror("tern-linkem: promiscuous mode");
#ifdef PACKET_IGNORE_OUTGOING
	int one = 1;
	(void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
#endif
	int sz = 8 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	/* Drain what arrived before the socket was bound to its interface. */
	unsigned char tmp[64];
	while (recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT) >= 0) {
	}
	return fd;
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig)
{
	if (sig == SIGUSR2)
		g_dump = 1;
	else if (sig == SIGUSR1)
		g_manual_bh = !g_manual_bh;
	else
		g_stop = 1;
}

static void dump_stats(const char *path, struct dir *dirs)
{
	FILE *f = path ? fopen(path, "w") : stderr;
	if (!f) {
		perror("tern-linkem: stats file");
		return;
	}
	for (int i = 0; i < 2; i++) {
		const struct stats *s = &dirs[i].st;
		fprintf(f,
			"%s rx=%" PRIu64 " tx=%" PRIu64 " tx_bytes=%" PRIu64 " lost=%" PRIu64
			" qdrop=%" PRIu64 " bhdrop=%" PRIu64 " dup=%" PRIu64 " corrupt=%" PRIu64
			" reorder=%" PRIu64 " txerr=%" PRIu64 " nonip=%" PRIu64 " held=%zu\n",
			dirs[i].name, s->rx, s->tx, s->tx_bytes, s->lost, s->qdrop, s->bhdrop, s->dup,
			s->corrupt, s->reorder, s->txerr, s->nonip, dirs[i].held.n);
	}
	if (path)
		fclose(f);
	else
		fflush(f);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: tern-linkem -a IF -b IF [--seed N] [--stats FILE] [--pidfile FILE]\n"
		"                   [--both SPEC] [--ab SPEC] [--ba SPEC]\n"
		"SPEC: key=value words, comma or space separated (--both first, then per direction):\n"
		"  delay=TIME jitter=TIME rate=RATE queue=BYTES|Np loss=PCT ge=P/R[/BAD[/GOOD]]\n"
		"  reorder=PCT[/TIME] dup=PCT corrupt=PCT onoff=UP/DOWN blackhole=START/LEN\n"
		"TIME: 150ms 1.5s 200us (bare = ms); RATE: 10mbit 1.1mbit 500kbit; PCT: 1%% or 1\n"
		"signals: USR1 toggles a blackhole both ways, USR2 writes the counters, TERM stops.\n");
}

int main(int argc, char **argv)
{
	const char *ifa = NULL, *ifb = NULL, *stats = NULL, *pidfile = NULL;
	const char *both = NULL, *ab = NULL, *ba = NULL;
	uint64_t seed = 1;
	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage();
			return 0;
		}
		if (!v) {
			usage();
			return 2;
		}
		if (strcmp(a, "-a") == 0)
			ifa = v;
		else if (strcmp(a, "-b") == 0)
			ifb = v;
		else if (strcmp(a, "--seed") == 0)
			seed = strtoull(v, NULL, 0);
		else if (strcmp(a, "--stats") == 0)
			stats = v;
		else if (strcmp(a, "--pidfile") == 0)
			pidfile = v;
		else if (strcmp(a, "--both") == 0)
			both = v;
		else if (strcmp(a, "--ab") == 0)
			ab = v;
		else if (strcmp(a, "--ba") == 0)
			ba = v;
		else {
			usage();
			return 2;
		}
	}
	if (!ifa || !ifb) {
		usage();
		return 2;
	}

	static struct dir dirs[2];
	dirs[0].name = "ab";
	dirs[1].name = "ba";
	for (int i = 0; i < 2; i++) {
		if (both && parse_spec(&dirs[i].p, both) < 0)
			return 2;
		const char *own = i == 0 ? ab : ba;
		if (own && parse_spec(&dirs[i].p, own) < 0)
			return 2;
		struct params *p = &dirs[i].p;
		if (p->rate && p->queue == 0) {
			p->queue = p->rate / 8 / 10; /* 100 ms at the rate */
			if (p->queue < 16384)
				p->queue = 16384;
		}
		rng_seed(&dirs[i].rng, seed * 2 + (uint64_t)i);
	}

	int fa = open_if(ifa), fb = open_if(ifb);
	if (fa < 0 || fb < 0)
		return 1;
	dirs[0].in_fd = fa;
	dirs[0].out_fd = fb;
	dirs[1].in_fd = fb;
	dirs[1].out_fd = fa;

	(void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);

	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (f) {
			fprintf(f, "%ld\n", (long)getpid());
			fclose(f);
		}
	}

	unsigned char *buf = malloc(FRAME_MAX);
	if (!buf)
		return 1;
	g_t0 = now_ns();
	struct pollfd pfd[2] = {{.fd = fa, .events = POLLIN}, {.fd = fb, .events = POLLIN}};
	while (!g_stop) {
		uint64_t now = now_ns();
		release_due(&dirs[0], now);
		release_due(&dirs[1], now);
		if (g_dump) {
			g_dump = 0;
			dump_stats(stats, dirs);
		}
		uint64_t next = UINT64_MAX;
		for (int i = 0; i < 2; i++)
			if (dirs[i].held.n > 0 && dirs[i].held.v[0]->t < next)
				next = dirs[i].held.v[0]->t;
		struct timespec ts, *tsp = NULL;
		if (next != UINT64_MAX) {
			uint64_t wait = next > now ? next - now : 0;
			ts.tv_sec = (time_t)(wait / NS_PER_S);
			ts.tv_nsec = (long)(wait % NS_PER_S);
			tsp = &ts;
		}
		int n = ppoll(pfd, 2, tsp, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("tern-linkem: ppoll");
			break;
		}
		if (pfd[0].revents & POLLIN)
			read_frames(&dirs[0], buf);
		if (pfd[1].revents & POLLIN)
			read_frames(&dirs[1], buf);
		if ((pfd[0].revents | pfd[1].revents) & (POLLERR | POLLNVAL)) {
			fprintf(stderr, "tern-linkem: interface went away\n");
			break;
		}
	}
	dump_stats(stats, dirs);
	for (int i = 0; i < 2; i++) {
		while (dirs[i].held.n > 0)
			free(heap_pop(&dirs[i].held));
		free(dirs[i].held.v);
	}
	free(buf);
	close(fa);
	close(fb);
	return 0;
}
