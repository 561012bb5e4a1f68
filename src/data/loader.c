/* loader.c: a pool of long-lived worker threads that read, decode and augment samples into a
 * bounded ring of batch buffers. Work is handed out per sample; a sample's content depends only
 * on (seed, epoch, stream position), so batches are identical for any thread count or timing.
 * Bad files are logged once, counted, and replaced by the next good index (idx+1, idx+2, ...). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fileio.h"
#include "core/log.h"
#include "data/data_internal.h"
#include "multigrain/data.h"

typedef struct slot {
    mg_batch b;
    int64_t batch;    /* which batch this slot holds (-1 = free) */
    int claimed;      /* samples handed to workers */
    int done;         /* samples finished */
    mg_status status; /* first failure in this batch */
    char msg[512];
} slot;

struct mg_loader {
    mg_dataset *ds;
    mg_loader_cfg cfg;
    int sample_floats;
    int max_share;
    int depth;
    slot *slots;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    int stop;
    /* epoch state */
    int64_t *stream;
    int64_t stream_len;
    int64_t n_batches;
    uint64_t epoch;
    int64_t next_batch; /* batch being handed out */
    int64_t next_ret;   /* next batch returned to the consumer */
    int64_t held;       /* batch the consumer holds (-1 none) */
    int in_flight;      /* samples being processed outside the lock */
    double waited;      /* seconds the consumer spent waiting for batches */
};

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void mg_loader_cfg_default(mg_loader_cfg *c, bool train) {
    memset(c, 0, sizeof *c);
    c->threads = 4;
    c->prefetch = 4;
    mg_transform_cfg_default(&c->transform, train);
    mg_sampler_cfg_default(&c->sampler);
    c->sampler.shuffle = train;
}

/* Processes one sample (dataset index idx at stream position pos) into out. */
static mg_status load_one(mg_loader *ld, int64_t idx, int64_t pos, mg_transform_ws *ws, float *out, int64_t *used) {
    mg_dataset *ds = ld->ds;
    const mg_transform_cfg *tc = &ld->cfg.transform;
    for (int64_t t = 0; t < ds->n; t++) {
        int64_t j = (idx + t) % ds->n;
        if (__atomic_load_n(&ds->bad[j], __ATOMIC_ACQUIRE)) continue;
        mg_status st;
        int ow, oh;
        if (ds->idx_pixels) {
            mg_image img = {0};
            st = mg_dataset_decode(ds, j, &tc->decode, &img);
            if (st == MG_OK)
                st = data_transform_run(tc, NULL, 0, &img, ld->cfg.sampler.seed, ld->epoch, (uint64_t)pos, ws, out,
                                        (size_t)ld->sample_floats, &ow, &oh);
            mg_image_free(&img);
        } else {
            char path[4096];
            MG_TRY(mg_dataset_path(ds, j, path, sizeof path));
            void *data = NULL;
            size_t size = 0;
            st = mg_file_read_all(path, &data, &size);
            if (st == MG_OK)
                st = mg_transform_apply_mem(tc, data, size, ld->cfg.sampler.seed, ld->epoch, (uint64_t)pos, ws, out,
                                            (size_t)ld->sample_floats, &ow, &oh);
            free(data);
        }
        if (st == MG_OK) {
            *used = j;
            return MG_OK;
        }
        if (st == MG_ERR_NOMEM) return st;
        char reason[512];
        snprintf(reason, sizeof reason, "%s", mg_error_message());
        MG_TRY(mg_dataset_mark_bad(ds, j, reason));
    }
    return MG_FAIL(MG_ERR_FORMAT, "dataset %s: every image is bad", ds->root ? ds->root : "");
}

static void *worker_main(void *arg) {
    mg_loader *ld = arg;
    mg_transform_ws ws = {0};
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (!ld->stop && !(ld->next_batch < ld->n_batches && ld->next_batch < ld->next_ret + ld->depth))
            pthread_cond_wait(&ld->cv_work, &ld->mu);
        if (ld->stop) break;
        int64_t b = ld->next_batch;
        slot *s = &ld->slots[b % ld->depth];
        if (s->batch != b) { /* first claim of this batch: set the slot up */
            int64_t begin, end;
            mg_sampler_batch_range(&ld->cfg.sampler, b, &begin, &end);
            s->batch = b;
            s->claimed = s->done = 0;
            s->status = MG_OK;
            s->msg[0] = 0;
            s->b.n = (int)(end - begin);
            s->b.index = b;
            for (int k = 0; k < s->b.n; k++) s->b.position[k] = begin + k;
        }
        int k = s->claimed++;
        if (s->claimed >= s->b.n) ld->next_batch++;
        if (s->b.n == 0) { /* an empty share (tiny last batch): nothing to do */
            ld->next_batch = b + 1;
            pthread_cond_broadcast(&ld->cv_done);
            continue;
        }
        int64_t pos = s->b.position[k];
        int64_t idx = ld->stream[pos];
        ld->in_flight++;
        pthread_mutex_unlock(&ld->mu);

        int64_t used = idx;
        mg_status st = load_one(ld, idx, pos, &ws, s->b.images + (size_t)k * ld->sample_floats, &used);
        char msg[512];
        if (st != MG_OK) snprintf(msg, sizeof msg, "%s", mg_error_message());

        pthread_mutex_lock(&ld->mu);
        s->b.instance[k] = used;
        s->b.labels[k] = ld->ds->labels ? ld->ds->labels[used] : -1;
        if (st != MG_OK && s->status == MG_OK) {
            s->status = st;
            memcpy(s->msg, msg, sizeof msg);
        }
        s->done++;
        ld->in_flight--;
        if (s->done == s->b.n || ld->in_flight == 0) pthread_cond_broadcast(&ld->cv_done);
    }
    pthread_mutex_unlock(&ld->mu);
    mg_transform_ws_free(&ws);
    return NULL;
}

mg_status mg_loader_init(mg_loader **out, mg_dataset *ds, const mg_loader_cfg *cfg) {
    *out = NULL;
    if (cfg->threads < 1 || cfg->threads > 1024) return MG_FAIL(MG_ERR_INVALID_ARG, "loader: threads must be in [1, 1024], found %d", cfg->threads);
    if (cfg->prefetch < 1 || cfg->prefetch > 1024) return MG_FAIL(MG_ERR_INVALID_ARG, "loader: prefetch must be in [1, 1024], found %d", cfg->prefetch);
    if (!cfg->transform.train && cfg->transform.eval_mode == MG_EVAL_RECT)
        return MG_FAIL(MG_ERR_INVALID_ARG, "loader: rect mode gives images of different sizes; batch them one by one with mg_image_load_tensor");
    if (cfg->transform.size < 1 || cfg->transform.size > 8192) return MG_FAIL(MG_ERR_INVALID_ARG, "loader: size must be in [1, 8192], found %d", cfg->transform.size);
    if (!ds || ds->n <= 0) return MG_FAIL(MG_ERR_INVALID_ARG, "loader: the dataset is empty");
    mg_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return MG_FAIL(MG_ERR_NOMEM, "loader: out of memory");
    ld->ds = ds;
    ld->cfg = *cfg;
    ld->cfg.sampler.n = ds->n;
    ld->sample_floats = 3 * cfg->transform.size * cfg->transform.size;
    ld->depth = cfg->prefetch;
    ld->held = -1;
    ld->n_batches = 0;
    mg_status st = MG_OK;
    /* a rank's share can exceed batch/world by up to m (group-aligned cuts) */
    ld->max_share = cfg->sampler.batch / (cfg->sampler.world > 0 ? cfg->sampler.world : 1) + cfg->sampler.reps + 1;
    if (ld->max_share > cfg->sampler.batch) ld->max_share = cfg->sampler.batch;
    ld->slots = calloc((size_t)ld->depth, sizeof(slot));
    if (!ld->slots) { free(ld); return MG_FAIL(MG_ERR_NOMEM, "loader: out of memory"); }
    for (int i = 0; i < ld->depth && st == MG_OK; i++) {
        slot *s = &ld->slots[i];
        s->batch = -1;
        s->b.c = 3;
        s->b.h = s->b.w = cfg->transform.size;
        s->b.images = malloc(sizeof(float) * (size_t)ld->sample_floats * ld->max_share);
        s->b.labels = malloc(sizeof(int32_t) * (size_t)ld->max_share);
        s->b.instance = malloc(sizeof(int64_t) * (size_t)ld->max_share);
        s->b.position = malloc(sizeof(int64_t) * (size_t)ld->max_share);
        if (!s->b.images || !s->b.labels || !s->b.instance || !s->b.position)
            st = MG_FAIL(MG_ERR_NOMEM, "loader: cannot allocate %d batch buffers of %d x 3x%dx%d floats", ld->depth, ld->max_share,
                         cfg->transform.size, cfg->transform.size);
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv_work, NULL);
    pthread_cond_init(&ld->cv_done, NULL);
    if (st == MG_OK) {
        ld->threads = calloc((size_t)cfg->threads, sizeof(pthread_t));
        if (!ld->threads) st = MG_FAIL(MG_ERR_NOMEM, "loader: out of memory");
    }
    for (int i = 0; st == MG_OK && i < cfg->threads; i++) {
        if (pthread_create(&ld->threads[i], NULL, worker_main, ld) != 0) st = MG_FAIL(MG_ERR_INTERNAL, "loader: cannot start worker thread %d", i);
        else ld->n_threads++;
    }
    if (st != MG_OK) {
        mg_loader_free(ld);
        return st;
    }
    *out = ld;
    return MG_OK;
}

/* Stops handing out work and waits for samples in flight (lock held). */
static void quiesce(mg_loader *ld) {
    ld->n_batches = 0;
    ld->next_batch = 0;
    while (ld->in_flight > 0) pthread_cond_wait(&ld->cv_done, &ld->mu);
}

mg_status mg_loader_start_epoch(mg_loader *ld, uint64_t epoch) {
    pthread_mutex_lock(&ld->mu);
    quiesce(ld);
    free(ld->stream);
    ld->stream = NULL;
    pthread_mutex_unlock(&ld->mu);
    int64_t *stream = NULL, len = 0;
    MG_TRY(mg_sampler_epoch(&ld->cfg.sampler, epoch, &stream, &len));
    pthread_mutex_lock(&ld->mu);
    ld->stream = stream;
    ld->stream_len = len;
    ld->epoch = epoch;
    for (int i = 0; i < ld->depth; i++) ld->slots[i].batch = -1;
    ld->next_batch = 0;
    ld->next_ret = 0;
    ld->held = -1;
    ld->n_batches = mg_sampler_num_batches(&ld->cfg.sampler);
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    return MG_OK;
}

mg_status mg_loader_next(mg_loader *ld, const mg_batch **batch) {
    *batch = NULL;
    pthread_mutex_lock(&ld->mu);
    if (ld->held >= 0) { /* release the previous batch: its slot may be refilled */
        ld->held = -1;
        ld->next_ret++;
        pthread_cond_broadcast(&ld->cv_work);
    }
    if (!ld->stream) {
        pthread_mutex_unlock(&ld->mu);
        return MG_FAIL(MG_ERR_INVALID_ARG, "loader: call mg_loader_start_epoch before mg_loader_next");
    }
    if (ld->next_ret >= ld->n_batches) {
        pthread_mutex_unlock(&ld->mu);
        return MG_OK;
    }
    slot *s = &ld->slots[ld->next_ret % ld->depth];
    if (!(s->batch == ld->next_ret && s->claimed >= s->b.n && s->done == s->b.n)) {
        double t0 = mono_now();
        while (!(s->batch == ld->next_ret && s->claimed >= s->b.n && s->done == s->b.n)) pthread_cond_wait(&ld->cv_done, &ld->mu);
        ld->waited += mono_now() - t0;
    }
    ld->held = ld->next_ret;
    mg_status st = s->status;
    char msg[512];
    memcpy(msg, s->msg, sizeof msg);
    pthread_mutex_unlock(&ld->mu);
    if (st != MG_OK) return MG_FAIL(st, "%s", msg);
    *batch = &s->b;
    return MG_OK;
}

int64_t mg_loader_num_batches(const mg_loader *ld) { return mg_sampler_num_batches(&ld->cfg.sampler); }

double mg_loader_wait_seconds(mg_loader *ld) {
    pthread_mutex_lock(&ld->mu);
    double w = ld->waited;
    pthread_mutex_unlock(&ld->mu);
    return w;
}

void mg_loader_free(mg_loader *ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->n_threads; i++) pthread_join(ld->threads[i], NULL);
    free(ld->threads);
    for (int i = 0; ld->slots && i < ld->depth; i++) {
        free(ld->slots[i].b.images);
        free(ld->slots[i].b.labels);
        free(ld->slots[i].b.instance);
        free(ld->slots[i].b.position);
    }
    free(ld->slots);
    free(ld->stream);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv_work);
    pthread_cond_destroy(&ld->cv_done);
    free(ld);
}
