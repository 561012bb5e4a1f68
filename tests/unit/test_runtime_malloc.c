/* test_runtime_malloc.c: mg_runtime_init keeps freed memory in the process (runtime.h): after it, a
 * block of 24 MiB comes from the heap instead of a mapping of its own (glibc's mallinfo2 counts
 * mapped blocks in hblks) and freeing it leaves the heap as large as it was (no trim, no munmap),
 * while a block over MG_MALLOC_MMAP_MAX is still mapped. Before it, and when the environment holds
 * the user's own malloc setting or MG_MALLOC_KEEP=0, glibc's defaults stay: the same 24 MiB block is
 * mapped. The tests run in order in one process (mallopt is process-wide and cannot be undone), the
 * untouched defaults first. Skips without glibc, and under AddressSanitizer (whose allocator replaces
 * glibc's malloc: mallopt and mallinfo2 do not describe it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "mg_test.h"
#include "multigrain/runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define MG_TEST_MALLOC 0
#elif defined(__GLIBC__)
#define MG_TEST_MALLOC 1
#else
#define MG_TEST_MALLOC 0
#endif

#if MG_TEST_MALLOC
#define BLOCK ((size_t)24 << 20)

/* held until the settings are applied: freeing a mapped block earlier would raise glibc's dynamic
 * threshold to its size and let the kept-memory test pass without mg_runtime_init */
static char *g_held[2];

static size_t mapped_blocks(void) { return mallinfo2().hblks; }

/* mg_runtime_init without its re-exec (no argv) and with a wait policy already chosen */
static void runtime_init(void) {
    setenv("MG_NO_REEXEC", "1", 1);
    mg_runtime_init(0, NULL, MG_WAIT_SPIN);
}

static char *alloc_touched(size_t n) {
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    return p;
}

static void test_user_setting_stays(void **state) {
    (void)state;
    setenv("MALLOC_TRIM_THRESHOLD_", "131072", 1); /* as if the user had set it before the program */
    runtime_init();
    assert_non_null(strstr(mg_runtime_malloc_setting(), "environment"));
    size_t before = mapped_blocks();
    g_held[0] = alloc_touched(BLOCK);
    assert_int_equal(mapped_blocks(), before + 1); /* glibc's default: a mapping of its own */
    unsetenv("MALLOC_TRIM_THRESHOLD_");

    setenv("MG_MALLOC_KEEP", "0", 1);
    runtime_init();
    assert_non_null(strstr(mg_runtime_malloc_setting(), "MG_MALLOC_KEEP=0"));
    g_held[1] = alloc_touched(BLOCK);
    assert_int_equal(mapped_blocks(), before + 2);
    unsetenv("MG_MALLOC_KEEP");
}

static void test_freed_memory_kept(void **state) {
    (void)state;
    runtime_init();
    assert_non_null(strstr(mg_runtime_malloc_setting(), "kept"));
    free(g_held[0]);
    free(g_held[1]);
    size_t before = mapped_blocks();
    char *p = alloc_touched(BLOCK);
    assert_int_equal(mapped_blocks(), before); /* from the heap */
    size_t heap = mallinfo2().arena;
    assert_true(heap >= BLOCK);
    free(p);
    assert_int_equal(mallinfo2().arena, heap); /* not trimmed: the pages stay with the process */
    char *big = alloc_touched((size_t)MG_MALLOC_MMAP_MAX + (1 << 20));
    assert_int_equal(mapped_blocks(), before + 1); /* over the limit: mapped, as before */
    free(big);
    /* a second call changes nothing */
    runtime_init();
    p = alloc_touched(BLOCK);
    assert_int_equal(mapped_blocks(), before);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_setting_stays),
        cmocka_unit_test(test_freed_memory_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void) {
    printf("SKIPPED: glibc's malloc is not the process's allocator here\n");
    return 77;
}
#endif
