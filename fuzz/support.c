/* Shared by the fuzz targets: see support.h. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t fz_rng_state;

void fz_rand(uint8_t *dst, size_t len, void *user)
{
    (void)user;
    for (size_t i = 0; i < len; i++) {
        fz_rng_state = fz_rng_state * 6364136223846793005ull + 1442695040888963407ull;
        dst[i] = (uint8_t)(fz_rng_state >> 56);
    }
}

_Noreturn void fz_die(const char *what)
{
    fprintf(stderr, "fuzz: invariant broken: %s\n", what);
    abort();
}

uint64_t fz_live, fz_allocs, fz_fail_at;

static void *fz_malloc(size_t size, void *user)
{
    (void)user;
    if (++fz_allocs == fz_fail_at) return NULL;
    uint8_t *p = malloc(size + 16);
    if (p == NULL) return NULL;
    memcpy(p, &size, sizeof(size));
    fz_live += size;
    return p + 16;
}

static void fz_free(void *ptr, size_t size, void *user)
{
    (void)user;
    if (ptr == NULL) return;
    uint8_t *p = (uint8_t *)ptr - 16;
    size_t was;
    memcpy(&was, p, sizeof(was));
    if (was != size) fz_die("free with a size other than the allocation's");
    fz_live -= size;
    free(p);
}

const tern_mem fz_mem = {fz_malloc, fz_free, NULL};

void fz_pump(tern_endpoint *a, const tern_addr *a_addr, tern_endpoint *b, const tern_addr *b_addr,
             uint64_t now)
{
    static uint8_t buf[32 * TERN_MAX_DATAGRAM];
    tern_datagram d[32];
    for (int round = 0; round < 8; round++) {
        int moved = 0, n;
        while ((n = tern_endpoint_send(a, now, d, 32, buf, sizeof(buf))) > 0) {
            for (int i = 0; i < n; i++)
                if (tern_addr_equal(&d[i].remote, b_addr))
                    tern_endpoint_recv(b, now, b_addr, &d[i].local, d[i].data, d[i].len);
            moved = 1;
        }
        while ((n = tern_endpoint_send(b, now, d, 32, buf, sizeof(buf))) > 0) {
            for (int i = 0; i < n; i++) tern_endpoint_recv(a, now, a_addr, b_addr, d[i].data, d[i].len);
            moved = 1;
        }
        if (!moved) break;
    }
}
