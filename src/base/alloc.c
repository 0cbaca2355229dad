/* The counting allocator (alloc.h). */
#include "base/alloc.h"

#include <string.h>

void *tern__malloc(tern__alloc *a, size_t size)
{
    if (a->max != 0 && (size > a->max || a->current > a->max - size)) {
        a->refused++;
        return NULL;
    }
    void *p = a->mem.malloc(size, a->mem.user);
    if (p != NULL) {
        a->current += size;
        if (a->current > a->peak) a->peak = a->current;
    }
    return p;
}

void *tern__calloc(tern__alloc *a, size_t size)
{
    void *p = tern__malloc(a, size);
    if (p != NULL) memset(p, 0, size);
    return p;
}

void tern__free(tern__alloc *a, void *p, size_t size)
{
    if (p == NULL) return;
    a->current -= size;
    a->mem.free(p, size, a->mem.user);
}
