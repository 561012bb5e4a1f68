/* linear.c: fully connected layer y = x W^T + b, forward and backward; fast path OpenBLAS sgemm (sgemv
 * for a few rows, on slices of W split between the OpenMP threads), reference path plain loops with
 * double accumulation. */
#include <cblas.h>

#include "multigrain/ops.h"
#include "multigrain/runtime.h"
#include <string.h>

#include "ops/cpu/layers_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows of W per slice boundary of the threaded sgemv: OpenBLAS's sgemv kernels take W's rows in
 * blocks of 4 to 16, so slices starting at multiples of 64 give every row the same sums as one call
 * over all of them (the outputs do not depend on the thread count; test_linear_threads). */
#define GEMV_SLICE_ROWS 64

__attribute__((noinline)) static void add_row(float *restrict acc, const float *restrict row, size_t n) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) acc[i] += row[i];
    for (size_t i = n8; i < n; i++) acc[i] += row[i];
}

static mg_status check(const char *op, int n, int in, int out) {
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, in);
    MG_CHECK_POS(op, out);
    return MG_OK;
}

mg_status mg_linear_forward(int n, int in, int out, const float *x, const float *W, const float *b, float *y) {
    const char *op = "linear_forward";
    MG_TRY(check(op, n, in, out));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, W);
    MG_CHECK_PTR(op, y);
    if (mg_layers_use_fast()) {
        float beta = 0.0f;
        if (b) {
            for (int i = 0; i < n; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
            beta = 1.0f;
        }
        mg_blas_serial(); /* small: threads would cost more than they save (runtime.h) */
        if (n <= MG_LINEAR_GEMV_MAX_ROWS) {
            /* a few rows (batch-1 inference): sgemm would first copy all of W into its packed
             * layout (ResNet-50's classifier, 8 MB: 1.4 ms at batch 1), sgemv streams it once a row
             * (0.4 ms; docs/PERFORMANCE.md "Classifier at small batch"), each thread its slice of W's
             * rows: the stream from memory is the cost, and the threads stay awake for the next
             * forward (docs/PERFORMANCE.md, "The stem and its pooling in one pass") */
            int nthr = mg_ops_get_threads();
            if (nthr > out / GEMV_SLICE_ROWS) nthr = out / GEMV_SLICE_ROWS;
            if (nthr < 1) nthr = 1;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthr) if (nthr > 1) schedule(static)
#endif
            for (int t = 0; t < nthr; t++) {
                const int o0 = (int)((long)out * t / nthr / GEMV_SLICE_ROWS * GEMV_SLICE_ROWS);
                const int o1 = t + 1 == nthr ? out : (int)((long)out * (t + 1) / nthr / GEMV_SLICE_ROWS * GEMV_SLICE_ROWS);
                for (int i = 0; i < n && o1 > o0; i++)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, in, 1.0f, W + (size_t)o0 * in, in,
                                x + (size_t)i * in, 1, beta, y + (size_t)i * out + o0, 1);
            }
            return MG_OK;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, beta, y, out);
        return MG_OK;
    }
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < in; k++) s += (double)x[(size_t)i * in + k] * W[(size_t)o * in + k];
            y[(size_t)i * out + o] = (float)s;
        }
    return MG_OK;
}

mg_status mg_linear_backward(int n, int in, int out, const float *x, const float *W, const float *dy,
                             float *dx, float *dW, float *db) {
    const char *op = "linear_backward";
    MG_TRY(check(op, n, in, out));
    MG_CHECK_PTR(op, dy);
    if (dx) MG_CHECK_PTR(op, W);
    if (dW) MG_CHECK_PTR(op, x);
    if (mg_layers_use_fast()) {
        mg_blas_serial();
        if (dx) /* dx[n,in] = dy[n,out] W[out,in] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in);
        if (dW) /* dW[out,in] += dy^T x */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dW, in);
        if (db) /* row by row: contiguous, vectorisable; db accumulates in row order */
            for (int i = 0; i < n; i++) add_row(db, dy + (size_t)i * out, (size_t)out);
        return MG_OK;
    }
    if (dx)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int o = 0; o < out; o++) s += (double)dy[(size_t)i * out + o] * W[(size_t)o * in + k];
                dx[(size_t)i * in + k] = (float)s;
            }
    if (dW)
        for (int o = 0; o < out; o++)
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int i = 0; i < n; i++) s += (double)dy[(size_t)i * out + o] * x[(size_t)i * in + k];
                dW[(size_t)o * in + k] += (float)s;
            }
    if (db)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
            db[o] += (float)s;
        }
    return MG_OK;
}
