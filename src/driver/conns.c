/*
 * The set of connections a driver knows to be alive, so tern_driver_shutdown() can close them
 * all: the core has no public iteration, so the driver wraps the endpoint's callbacks, adds a
 * handle at connect/accept/established and removes it at on_conn_free. base's hash map, keyed
 * by the handle's own bytes (a random hash key, so the layout of the heap cannot line handles
 * up in one bucket); add, delete and lookup are O(1) on average.
 */
#include <sodium.h>
#include <stdlib.h>

#include "driver/driver_int.h"

int drv_conns_init(drv_conns *s, tern__alloc *a)
{
    uint8_t k[16];
    randombytes_buf(k, sizeof(k));
    return tern__map_init(s, a, sizeof(tern_conn *), k);
}

int drv_conns_add(drv_conns *s, tern_conn *c)
{
    int rc = tern__map_put(s, (const uint8_t *)&c, c);
    return rc == TERN_ERR_LIMIT ? TERN_OK : rc; /* present already */
}

void drv_conns_del(drv_conns *s, tern_conn *c)
{
    tern__map_del(s, (const uint8_t *)&c, c);
}

tern_conn **drv_conns_copy(const drv_conns *s, size_t *n)
{
    *n = 0;
    if (s->n == 0) return NULL;
    tern_conn **list = malloc(s->n * sizeof(*list));
    if (list == NULL) return NULL;
    size_t pos = 0;
    for (tern_conn *c; *n < s->n && (c = tern__map_next(s, &pos)) != NULL;) list[(*n)++] = c;
    return list;
}

void drv_conns_free(drv_conns *s)
{
    tern__map_free(s);
}
