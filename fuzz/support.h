/*
 * What the fuzz targets share: a deterministic random source (so one input always makes the same
 * keys and packets), a size-checking allocation hook that knows the live bytes on its own, the
 * abort on a broken invariant, and the loop that carries datagrams between two in-memory
 * endpoints until nothing is left to send.
 */
#ifndef TERN_FUZZ_SUPPORT_H
#define TERN_FUZZ_SUPPORT_H
#include <stdint.h>

#include "tern/tern.h"

/* A 64-bit LCG; set fz_rng_state to start a run. Usable as tern_rand_fn. */
extern uint64_t fz_rng_state;
void fz_rand(uint8_t *dst, size_t len, void *user);

/* Prints "fuzz: invariant broken: WHAT" and aborts (libFuzzer records the input). */
_Noreturn void fz_die(const char *what);

/* An allocation hook that stores each block's size in a header and checks it on free (a free
 * with another size dies). fz_live: bytes allocated now; fz_allocs: allocations so far; the
 * fz_fail_at-th allocation fails (0: none). */
extern uint64_t fz_live, fz_allocs, fz_fail_at;
extern const tern_mem fz_mem;

/* Up to 8 rounds of: every datagram a sends to b_addr is handed to b (from the datagram's own
 * local address; what a sends elsewhere, such as punches, is dropped), every datagram b sends is
 * handed to a at a_addr from b_addr; stops early when neither had anything to send. */
void fz_pump(tern_endpoint *a, const tern_addr *a_addr, tern_endpoint *b, const tern_addr *b_addr,
             uint64_t now);
#endif
