/* hugepage.c: large buffers on transparent huge pages (hugepage.h). */
#include "core/hugepage.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int hugepages_on(void) {
    const char *e = getenv("MG_HUGEPAGES");
    return !(e && !strcmp(e, "0"));
}

#define PAGE ((size_t)4096) /* the small page: mmap's and madvise's granule */

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* AddressSanitizer checks the bounds of malloc's blocks only: with it, every buffer comes from
 * posix_memalign, on small pages */
#if defined(__SANITIZE_ADDRESS__)
#define OWN_MAPPINGS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OWN_MAPPINGS 0
#endif
#endif
#ifndef OWN_MAPPINGS
#define OWN_MAPPINGS 1
#endif

void *mg_hugepage_alloc(size_t bytes) {
    if (bytes < MG_HUGEPAGE_BYTES || !OWN_MAPPINGS) {
        void *p = NULL;
        return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
    }
    /* map 2 MiB more than the page-rounded size, then unmap the untouched slack around the 2 MiB-aligned
     * start */
    const size_t len = round_up(bytes, PAGE), span = len + MG_HUGEPAGE_BYTES;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    char *p = (char *)round_up((uintptr_t)m, MG_HUGEPAGE_BYTES);
    if (p > m) munmap(m, (size_t)(p - m));
    if (m + span > p + len) munmap(p + len, (size_t)(m + span - (p + len)));
#ifdef MADV_HUGEPAGE
    const size_t whole = bytes / MG_HUGEPAGE_BYTES * MG_HUGEPAGE_BYTES; /* pages wholly inside the buffer */
    if (hugepages_on()) (void)madvise(p, whole, MADV_HUGEPAGE); /* without THP it fails: small pages */
#endif
    return p;
}

void mg_mem_populate(void *p, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
    if (!p || bytes < MG_HUGEPAGE_BYTES) return;
    const uintptr_t a = round_up((uintptr_t)p, PAGE), b = ((uintptr_t)p + bytes) / PAGE * PAGE;
    if (b > a) (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
    (void)p, (void)bytes;
#endif
}

void mg_hugepage_free(void *p, size_t bytes) {
    if (!p) return;
    if (bytes < MG_HUGEPAGE_BYTES || !OWN_MAPPINGS)
        free(p);
    else
        munmap(p, round_up(bytes, PAGE));
}
