/* test_hugepage.c: mg_hugepage_alloc and mg_mem_populate (core/hugepage.h). Small buffers are 64-byte aligned; from 2 MiB
 * up a buffer is 2 MiB-aligned and, once written, its whole 2 MiB pages are huge pages where the
 * kernel's THP mode allows it ("madvise" or "always", read from /sys; the check skips otherwise) and
 * none of its last partial 2 MiB is (smaps' AnonHugePages of the buffer's range, read back); with
 * MG_HUGEPAGES=0 and the mode "madvise" none is. Under AddressSanitizer buffers come from
 * posix_memalign and only the alignment and the contents are checked. mg_mem_populate maps a fresh
 * range's pages without touching them (mincore counts them resident), and nothing below 2 MiB. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "core/hugepage.h"
#include "mg_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#else
#define ASAN 0
#endif

/* "always", "madvise", "never", or "" when unknown */
static void thp_mode(char *mode, size_t n) {
    mode[0] = 0;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return;
    char line[128];
    if (fgets(line, sizeof line, f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b && (size_t)(b - a - 1) < n) {
            memcpy(mode, a + 1, (size_t)(b - a - 1));
            mode[b - a - 1] = 0;
        }
    }
    fclose(f);
}

/* kB of AnonHugePages in the mappings that overlap [p, p + bytes), or -1 without /proc */
static long huge_kb(const void *p, size_t bytes) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    uintptr_t a = (uintptr_t)p, b = a + bytes, lo = 0, hi = 0;
    long sum = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long x, y;
        long kb;
        if (sscanf(line, "%lx-%lx ", &x, &y) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            lo = x, hi = y;
        } else if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1 && lo < b && hi > a) {
            sum += kb;
        }
    }
    fclose(f);
    return sum;
}

static void test_small_buffer(void **state) {
    (void)state;
    float *p = mg_hugepage_alloc(1000 * sizeof(float));
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++) p[i] = (float)i;
    assert_true(p[999] == 999.0f);
    mg_hugepage_free(p, 1000 * sizeof(float));
    mg_hugepage_free(NULL, 123); /* nothing */
}

static void test_large_buffer(void **state) {
    (void)state;
    const size_t bytes = 5 * MG_HUGEPAGE_BYTES + 12345; /* 5 whole 2 MiB pages and part of a sixth */
    char *p = mg_hugepage_alloc(bytes);
    assert_non_null(p);
    if (!ASAN) assert_int_equal((uintptr_t)p % MG_HUGEPAGE_BYTES, 0);
    memset(p, 7, bytes);
    assert_int_equal(p[0], 7);
    assert_int_equal(p[bytes - 1], 7);
    char mode[16];
    thp_mode(mode, sizeof mode);
    long kb = huge_kb(p, bytes);
    if (!ASAN && kb >= 0 && (!strcmp(mode, "madvise") || !strcmp(mode, "always"))) {
        /* the 5 whole pages, unless the kernel had no free 2 MiB page at the fault (fallback to small
         * pages): at least one, never the partial sixth */
        assert_true(kb >= 2048);
        assert_true(kb <= 5 * 2048);
    }
    mg_hugepage_free(p, bytes);

    setenv("MG_HUGEPAGES", "0", 1);
    p = mg_hugepage_alloc(bytes);
    unsetenv("MG_HUGEPAGES");
    assert_non_null(p);
    memset(p, 3, bytes);
    kb = huge_kb(p, bytes);
    if (!ASAN && kb >= 0 && !strcmp(mode, "madvise")) assert_int_equal(kb, 0);
    mg_hugepage_free(p, bytes);
}

/* pages of [p, p + bytes) resident (mincore), or -1 */
static long resident_pages(void *p, size_t bytes) {
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = bytes / pg;
    unsigned char *v = malloc(n);
    if (!v || mincore(p, bytes, v) != 0) {
        free(v);
        return -1;
    }
    long c = 0;
    for (size_t i = 0; i < n; i++) c += v[i] & 1;
    free(v);
    return c;
}

static void test_populate(void **state) {
    (void)state;
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE), bytes = 4 * MG_HUGEPAGE_BYTES;
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    long before = resident_pages(p, bytes);
    if (before < 0) {
        munmap(p, bytes);
        skip();
    }
    assert_int_equal(before, 0);
    mg_mem_populate(p, MG_HUGEPAGE_BYTES - pg); /* under 2 MiB: nothing */
    assert_int_equal(resident_pages(p, bytes), 0);
    mg_mem_populate(p + 1, bytes - 1); /* the whole pages inside: all but the first */
    long after = resident_pages(p, bytes);
    /* a kernel before 5.14 has no MADV_POPULATE_WRITE: nothing populated, as documented */
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0) sscanf(u.release, "%d.%d", &major, &minor);
    if (major > 5 || (major == 5 && minor >= 14)) assert_true(after >= (long)(bytes / pg) - 1);
    else assert_true(after == 0 || after >= (long)(bytes / pg) - 1);
    assert_int_equal(p[pg], 0); /* still zero */
    munmap(p, bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_populate),
        cmocka_unit_test(test_small_buffer),
        cmocka_unit_test(test_large_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
