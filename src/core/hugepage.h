/* hugepage.h: large buffers on transparent huge pages (2 MiB), for the weights and activations a
 * model fills once and then reads at every forward. A page fault costs well under a microsecond on
 * bare metal but about 13 us per 4 KiB page in our PVM guest (docs/PERFORMANCE.md, "Start-up"),
 * where loading ResNet-50 and building its inference network touched ~300 MB of new memory.
 * Buffers of MG_HUGEPAGE_BYTES and more get a mapping of their own, 2 MiB-aligned, whose whole
 * 2 MiB pages are marked MADV_HUGEPAGE before anything touches them, so that each fault maps 2 MiB
 * at once (the kernel's THP mode "madvise", Debian's default, needs the mark; "always" needs none
 * and "never" ignores it). Only pages wholly inside the buffer are marked and the buffers are
 * written whole, so RSS does not grow; fresh mappings leave khugepaged nothing to collapse later,
 * while a forward runs. MG_HUGEPAGES=0: the same mappings without the mark. */
#ifndef MG_CORE_HUGEPAGE_H
#define MG_CORE_HUGEPAGE_H

#include <stddef.h>

#define MG_HUGEPAGE_BYTES ((size_t)2 << 20)

/* `bytes` bytes, 64-byte aligned (2 MiB-aligned and on huge pages where possible from
 * MG_HUGEPAGE_BYTES up), contents undefined; NULL when out of memory. Release with
 * mg_hugepage_free and the same `bytes`. */
void *mg_hugepage_alloc(size_t bytes);
/* Releases a buffer of mg_hugepage_alloc(bytes); NULL does nothing. */
void mg_hugepage_free(void *p, size_t bytes);

/* Maps the whole pages inside [p, p + bytes) at once (MADV_POPULATE_WRITE), for a buffer on small
 * pages about to be written whole: one call instead of a fault per 4 KiB page (on the PVM guest 100 MB
 * then took 18 ms + 133 ms of writing against 315-355 ms). Nothing below 2 MiB, without the call
 * (Linux before 5.14), or on failure. Used where huge pages cost later: the model's parameters (a
 * training step on huge-page parameters ran 2-4 % slower, docs/PERFORMANCE.md, "Start-up"). */
void mg_mem_populate(void *p, size_t bytes);

#endif
