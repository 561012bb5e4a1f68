/* threadpool.h: a persistent pool of worker threads for coarse parallel loops.
 * Workers are created once and sleep on a condition variable between jobs (no spinning, so a
 * busy neighbour process cannot turn our barriers into a slowdown); the calling thread takes
 * part in every job. Tasks are handed out dynamically with an atomic counter. */
#ifndef MG_CORE_THREADPOOL_H
#define MG_CORE_THREADPOOL_H

#include "multigrain/status.h"

typedef struct mg_pool mg_pool;
/* Runs task `task` (0..n_tasks-1) on pool thread `thread` (0..threads-1; 0 is the caller). */
typedef void (*mg_task_fn)(void *ctx, int task, int thread);

/* threads = total threads including the caller (>= 1). */
mg_status mg_pool_init(mg_pool **pool, int threads);
void mg_pool_free(mg_pool *pool);
int mg_pool_threads(const mg_pool *pool);
/* Runs fn for every task and returns when all are done. Not re-entrant: do not call from a task. */
void mg_pool_run(mg_pool *pool, int n_tasks, mg_task_fn fn, void *ctx);

/* Process-wide default pool, created on first use with mg_pool_default_threads() threads. */
mg_pool *mg_pool_global(void);
/* Sets the thread count of the global pool (recreates it); 0 = number of online cores. */
mg_status mg_pool_global_set_threads(int threads);
/* The thread count asked for (--threads), or the number of online cores. */
int mg_pool_default_threads(void);

#endif
