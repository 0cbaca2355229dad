/*
 * tern send / tern recv helpers (tools.h): the whole-file SHA-256, the progress line or bar, the
 * base name of a path.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/tools.h"

int xfer_hash_init(xfer_hash *h)
{
    EVP_MD_CTX *ctx = h->ctx ? h->ctx : EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    h->ctx = ctx;
    return EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

void xfer_hash_update(xfer_hash *h, const void *data, size_t len)
{
    if (len) EVP_DigestUpdate(h->ctx, data, len);
}

void xfer_hash_final(xfer_hash *h, uint8_t out[XFER_HASH_LEN])
{
    unsigned int n = XFER_HASH_LEN;
    EVP_DigestFinal_ex(h->ctx, out, &n);
}

void xfer_hash_free(xfer_hash *h)
{
    EVP_MD_CTX_free(h->ctx); /* also wipes the state */
    h->ctx = NULL;
}

static void fmt_bytes(uint64_t b, char *out, size_t len)
{
    if (b >= (1ull << 30)) snprintf(out, len, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20)) snprintf(out, len, "%.1f MiB", (double)b / (1ull << 20));
    else snprintf(out, len, "%.1f KiB", (double)b / 1024.0);
}

void xfer_progress_init(xfer_progress *p, const char *cmd, const char *name, uint64_t total,
                        uint64_t now, int quiet)
{
    memset(p, 0, sizeof(*p));
    p->cmd = cmd;
    p->name = name;
    p->total = total;
    p->t0 = p->last_t = p->rate_t = now;
    p->tty = isatty(STDERR_FILENO);
    p->quiet = quiet;
}

void xfer_progress_update(xfer_progress *p, uint64_t done, uint64_t now, int final)
{
    if (p->quiet) return;
    uint64_t period = p->tty ? 200 * TERN_NS_PER_MS : 2 * TERN_NS_PER_S;
    if (!final && now - p->last_t < period) return;
    /* rate over the last second or so, smoothed, so the time left does not jump about */
    if (now - p->rate_t >= 200 * TERN_NS_PER_MS) {
        double inst = (double)(done - p->rate_done) * 8e9 / (double)(now - p->rate_t);
        p->rate_bps = p->rate_bps == 0 ? inst : 0.7 * p->rate_bps + 0.3 * inst;
        p->rate_t = now;
        p->rate_done = done;
    }
    p->last_t = now;
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    char d[32], t[32], left[32] = "--";
    fmt_bytes(done, d, sizeof(d));
    fmt_bytes(p->total, t, sizeof(t));
    if (p->rate_bps > 0 && done < p->total) {
        double s = (double)(p->total - done) * 8.0 / p->rate_bps;
        if (s < 360000) snprintf(left, sizeof(left), "%d:%02d", (int)s / 60, (int)s % 60);
    } else if (done >= p->total) {
        snprintf(left, sizeof(left), "0:00");
    }
    if (p->tty) {
        char bar[31];
        int fill = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%.24s [%s] %5.1f%% %s/%s %8.1f Mbit/s %s left\033[K", p->name, bar,
                pct, d, t, p->rate_bps / 1e6, left);
        if (final) fputc('\n', stderr);
    } else if (!final) {
        fprintf(stderr, "%s: %s: %.1f%%, %s of %s, %.1f Mbit/s, %s left\n", p->cmd, p->name, pct, d,
                t, p->rate_bps / 1e6, left);
    }
    fflush(stderr);
}

const char *xfer_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}
