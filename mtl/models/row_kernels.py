"""Small C kernels for the row-wise embedding path, expert gating and batch norm with ReLU, compiled at first
use with the system C compiler.

Loops that torch runs as several passes with temporaries, or as many tiny ops at the shapes these models
have: the distinct rows of a batch with the inverse map (a marker array instead of a sort), the
per-field weighted sums of the looked-up rows and, backward, each distinct row's gradient (one pass each
instead of a gather, a product, a split-and-sum and a scatter), the lazy Adam / Adagrad update of touched
rows (each row read and written once), gated mixtures of experts with their backward, and a training
batch norm with the ReLU after it, forward and backward (two passes over the activation each). Loops over
independent rows run on ``torch.get_num_threads()`` OpenMP threads where the compiler has OpenMP; the
gradient scatter into shared rows stays serial. The shared library is cached under
``<state dir>/kernels`` keyed by the hash of the source and the compiler flags. Without a compiler, on
anything but float32 CPU tensors, or with ``MTL_NATIVE_KERNELS=0``, callers get ``None``/``False`` (or
``native()`` says no) and use their pure-torch path, which computes the same values up to float rounding
(batch norm sums in another order).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define PRAGMA(text) _Pragma(#text)
#ifdef _OPENMP
#define PARALLEL(threads, work) PRAGMA(omp parallel for num_threads(threads) if (work))
#else
#define PARALLEL(threads, work)
#endif
/* a vectorised sum (in another order than the loop's): -fopenmp-simd, with or without OpenMP threads */
#define SIMD_SUM(total) PRAGMA(omp simd reduction(+ : total))
/* below this many floats of work a loop runs on one thread: waking the others costs more */
#define GRAIN 32768
/* a function compiled also for AVX2 and AVX-512, the one for the CPU chosen when the library loads (glibc's
   ifunc): the library stays portable. Vector width leaves every value as it is (sums run per lane in row
   order, and -ffp-contract=off fuses no multiply-add, which clang would do by default). NO_CLONES: a
   compiler that rejects the attribute builds the plain loops */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute) && !defined(NO_CLONES)
#if __has_attribute(target_clones)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef WIDE
#define WIDE
#endif

/* rows of a large table are touched in random order: each loop asks for the row AHEAD iterations on
   while it works on this one, so the memory accesses overlap instead of waiting one after another */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address, write) __builtin_prefetch((address), (write))
#else
#define PREFETCH(address, write)
#endif
#define AHEAD 16

/* distinct ids in first-seen order and each id's position among them; marker: -1 per table row,
   left at -1 on return */
int64_t unique_rows(const int32_t *ids, int64_t n, int32_t *marker, int64_t *unique, int64_t *inverse) {
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) PREFETCH(marker + ids[i + AHEAD], 1);
        int32_t id = ids[i];
        int32_t slot = marker[id];
        if (slot < 0) { slot = (int32_t)u; marker[id] = slot; unique[u++] = id; }
        inverse[i] = slot;
    }
    for (int64_t k = 0; k < u; k++) marker[unique[k]] = -1;
    return u;
}

/* out[k] = w[ids[k]]: the rows of a batch, gathered from the table */
void gather_rows(const float *restrict w, const int64_t *restrict ids, int64_t u, int64_t d,
                 float *restrict out) {
    for (int64_t k = 0; k < u; k++) {
        if (k + AHEAD < u) PREFETCH(w + ids[k + AHEAD] * d, 0);
        const float *wk = w + ids[k] * d;
        float *o = out + k * d;
        for (int64_t j = 0; j < d; j++) o[j] = wk[j];
    }
}

/* out[inverse[i]] += g[i] for every looked-up row i: the gradient of each distinct row */
void sum_rows(const float *restrict g, const int64_t *restrict inverse, int64_t n, int64_t d,
              float *restrict out) {
    for (int64_t i = 0; i < n; i++) {
        float *o = out + inverse[i] * d;
        const float *gi = g + i * d;
        for (int64_t j = 0; j < d; j++) o[j] += gi[j];
    }
}

/* lazy Adam (torch.optim.SparseAdam's arithmetic) with L2 on the touched rows: row_decay[row] per row,
   or decay for all where row_decay is NULL */
/* moments: per table row, the d first moments then the d second moments */
/* ids are distinct, so rows update independently */
void adam_rows(float *restrict w, float *restrict moments, const int64_t *restrict ids,
               const float *restrict g, int64_t u, int64_t d,
               float step_size, float beta1, float beta2, float eps, float decay,
               const float *restrict row_decay, int threads) {
    PARALLEL(threads, u * d > GRAIN)
    for (int64_t k = 0; k < u; k++) {
        if (k + AHEAD < u) {
            PREFETCH(w + ids[k + AHEAD] * d, 1);
            PREFETCH(moments + ids[k + AHEAD] * 2 * d, 1);
            if (row_decay) PREFETCH(row_decay + ids[k + AHEAD], 0);
        }
        float *wk = w + ids[k] * d;
        float *m = moments + ids[k] * 2 * d, *v = m + d;
        const float *gk = g + k * d;
        float dk = row_decay ? row_decay[ids[k]] : decay;
        for (int64_t j = 0; j < d; j++) {
            float grad = gk[j] + dk * wk[j];
            float mj = m[j], vj = v[j];
            mj += (grad - mj) * (1.0f - beta1);
            vj += (grad * grad - vj) * (1.0f - beta2);
            m[j] = mj; v[j] = vj;
            wk[j] -= mj / (sqrtf(vj) + eps) * step_size;
        }
    }
}

/* Adagrad (torch.optim.Adagrad, no lr decay) with L2 on the touched rows (as adam_rows) */
void adagrad_rows(float *restrict w, float *restrict s, const int64_t *restrict ids,
                  const float *restrict g, int64_t u, int64_t d,
                  float lr, float eps, float decay, const float *restrict row_decay, int threads) {
    PARALLEL(threads, u * d > GRAIN)
    for (int64_t k = 0; k < u; k++) {
        if (k + AHEAD < u) {
            PREFETCH(w + ids[k + AHEAD] * d, 1);
            PREFETCH(s + ids[k + AHEAD] * d, 1);
            if (row_decay) PREFETCH(row_decay + ids[k + AHEAD], 0);
        }
        int64_t row = ids[k] * d;
        const float *gk = g + k * d;
        float dk = row_decay ? row_decay[ids[k]] : decay;
        for (int64_t j = 0; j < d; j++) {
            float grad = gk[j] + dk * w[row + j];
            float sj = s[row + j] + grad * grad;
            s[row + j] = sj;
            w[row + j] -= lr * grad / (sqrtf(sj) + eps);
        }
    }
}

/* out[i, b] = sum over the columns k of bag b (bag[k] == b): w[i, k] * rows[inverse[i, k]], where
   w[i, k] = weight[i, k - (c - wc)] for the last wc columns and 1 before them; out is (n, bags, d), the
   columns of a bag summed in column order */
void pool_rows(const float *restrict rows, const int64_t *restrict inverse, const float *restrict weight,
               int64_t wc, const int64_t *restrict bag, int64_t n, int64_t c, int64_t bags, int64_t d,
               float *restrict out, int threads) {
    PARALLEL(threads, n * c * d > GRAIN)
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * bags * d;
        for (int64_t j = 0; j < bags * d; j++) o[j] = 0.0f;
        for (int64_t k = 0; k < c; k++) {
            float wk = k < c - wc ? 1.0f : weight[i * wc + k - (c - wc)];
            const float *r = rows + inverse[i * c + k] * d;
            float *ok = o + bag[k] * d;
            for (int64_t j = 0; j < d; j++) ok[j] += wk * r[j];
        }
    }
}

/* pool_rows' backward: grad_rows[inverse[i, k]] += weight[i, k] * grad[i, bag[k]]; serial, since rows
   are shared between lookups */
void pool_rows_backward(const float *restrict grad, const int64_t *restrict inverse,
                        const float *restrict weight, int64_t wc, const int64_t *restrict bag, int64_t n,
                        int64_t c, int64_t bags, int64_t d, float *restrict grad_rows) {
    for (int64_t i = 0; i < n; i++) {
        const float *g = grad + i * bags * d;
        for (int64_t k = 0; k < c; k++) {
            float wk = k < c - wc ? 1.0f : weight[i * wc + k - (c - wc)];
            float *o = grad_rows + inverse[i * c + k] * d;
            const float *gk = g + bag[k] * d;
            for (int64_t j = 0; j < d; j++) o[j] += wk * gk[j];
        }
    }
}

/* gated mixtures: out[i, t] = sum_k w[t, k, i] * experts[i, select[t, k]] for row i and gate t over its g
   experts select[t, :] (of e, width d); w: (t, g, n), each gate's weights of every row side by side */
void mix_experts(const float *restrict w, const float *restrict experts, const int64_t *restrict select,
                 int64_t n, int64_t t, int64_t g, int64_t e, int64_t d, float *restrict out, int threads) {
    PARALLEL(threads, n * t * g * d > GRAIN)
    for (int64_t i = 0; i < n; i++) {
        const float *x = experts + i * e * d;
        for (int64_t task = 0; task < t; task++) {
            float *o = out + (i * t + task) * d;
            for (int64_t j = 0; j < d; j++) o[j] = 0.0f;
            for (int64_t k = 0; k < g; k++) {
                const float *xk = x + select[task * g + k] * d;
                float wk = w[(task * g + k) * n + i];
                for (int64_t j = 0; j < d; j++) o[j] += wk * xk[j];
            }
        }
    }
}

/* mix_experts' backward: the gradients of w (same layout) and of the experts */
void mix_experts_backward(const float *restrict grad, const float *restrict w,
                          const float *restrict experts, const int64_t *restrict select,
                          int64_t n, int64_t t, int64_t g, int64_t e, int64_t d,
                          float *restrict grad_w, float *restrict grad_experts, int threads) {
    PARALLEL(threads, n * t * g * d > GRAIN)
    for (int64_t i = 0; i < n; i++) {
        const float *x = experts + i * e * d;
        float *gx = grad_experts + i * e * d;
        for (int64_t j = 0; j < e * d; j++) gx[j] = 0.0f;
        for (int64_t task = 0; task < t; task++) {
            const float *go = grad + (i * t + task) * d;
            for (int64_t k = 0; k < g; k++) {
                const float *xk = x + select[task * g + k] * d;
                float *gxk = gx + select[task * g + k] * d;
                float wk = w[(task * g + k) * n + i], dot = 0.0f;
                SIMD_SUM(dot)
                for (int64_t j = 0; j < d; j++) dot += go[j] * xk[j];
                for (int64_t j = 0; j < d; j++) gxk[j] += wk * go[j];
                grad_w[(task * g + k) * n + i] = dot;
            }
        }
    }
}

/* The batch-norm kernels sum x (n, c) by channel in double, in chunks of about GRAIN floats (more than one
   thread runs when n * c > GRAIN), each chunk's sums apart and added in chunk order: the same values on any
   thread count. The passes over a chunk are functions of their own, whose restrict arguments let the
   compiler vectorise them. */
static int64_t chunk_rows(int64_t c) { return c >= GRAIN ? 1 : GRAIN / c; }

/* part[0, j] = sum over the chunks k of part[k, j] (width sums per chunk), in chunk order */
static void add_chunks(double *part, int64_t chunks, int64_t width) {
    for (int64_t k = 1; k < chunks; k++)
        for (int64_t j = 0; j < width; j++) part[j] += part[k * width + j];
}

/* per channel j of x (rows, c): sums[j] = sum_i x[i, j] and sums[c + j] = sum_i x[i, j]^2 */
WIDE static void channel_sums(const float *restrict x, int64_t rows, int64_t c, double *restrict sums) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * c;
        for (int64_t j = 0; j < c; j++) {
            double v = xi[j];
            sums[j] += v;
            sums[c + j] += v * v;
        }
    }
}

/* grad where the forward's ReLU let its input through (z = x * scale + shift > 0), else 0: a bitwise
   select, which vectorises beside double sums where ?: does not */
static inline float relu_grad(float grad, float z) {
    int32_t bits, keep = -(int32_t)(z > 0.0f);
    memcpy(&bits, &grad, sizeof bits);
    bits &= keep;
    memcpy(&grad, &bits, sizeof bits);
    return grad;
}

/* out = relu(x * scale + shift) per channel; stats (4, c): mean, 1 / sqrt(var + eps), scale, shift */
WIDE static void scale_relu(const float *restrict x, int64_t rows, int64_t c,
                            const float *restrict stats, float *restrict out) {
    const float *scale = stats + 2 * c, *shift = stats + 3 * c;
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * c;
        float *o = out + i * c;
        for (int64_t j = 0; j < c; j++) {
            float v = xi[j] * scale[j] + shift[j];
            o[j] = v < 0.0f ? 0.0f : v;  /* NaN stays NaN, as in torch's relu */
        }
    }
}

/* per channel j: sums[j] = sum_i g and sums[c + j] = sum_i g * (x[i, j] - mean[j]), g = relu_grad */
WIDE static void relu_grad_sums(const float *restrict grad, const float *restrict x, int64_t rows,
                                int64_t c, const float *restrict stats, double *restrict sums) {
    const float *mean = stats, *scale = stats + 2 * c, *shift = stats + 3 * c;
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * c, *gi = grad + i * c;
        for (int64_t j = 0; j < c; j++) {
            double g = relu_grad(gi[j], xi[j] * scale[j] + shift[j]);
            sums[j] += g;
            sums[c + j] += g * (xi[j] - mean[j]);
        }
    }
}

/* grad_x = a * g - d * (x - mean) - e per channel, g = relu_grad; terms (3, c): a, d, e */
WIDE static void relu_grad_input(const float *restrict grad, const float *restrict x, int64_t rows,
                                 int64_t c, const float *restrict stats, const float *restrict terms,
                                 float *restrict grad_x) {
    const float *mean = stats, *scale = stats + 2 * c, *shift = stats + 3 * c;
    const float *a = terms, *d = terms + c, *e = terms + 2 * c;
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * c, *gi = grad + i * c;
        float *o = grad_x + i * c;
        for (int64_t j = 0; j < c; j++) {
            float g = relu_grad(gi[j], xi[j] * scale[j] + shift[j]);
            o[j] = a[j] * g - d[j] * (xi[j] - mean[j]) - e[j];
        }
    }
}

/* out = relu(batch norm of x (n, c) with this batch's mean and biased variance); stats (4, c) as in
   scale_relu; running_mean and running_var move by momentum towards the mean and the unbiased variance.
   Two passes over x: its sums, then out. Returns -1 where the chunk sums could not be allocated. */
int batch_norm_relu(const float *restrict x, int64_t n, int64_t c, const float *restrict weight,
                    const float *restrict bias, double eps, double momentum, float *restrict running_mean,
                    float *restrict running_var, float *restrict stats, float *restrict out, int threads) {
    int64_t rows = chunk_rows(c), chunks = (n + rows - 1) / rows;
    double *part = calloc((size_t)(chunks * 2 * c), sizeof(double));
    if (!part) return -1;
    PARALLEL(threads, chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t first = k * rows, count = first + rows < n ? rows : n - first;
        channel_sums(x + first * c, count, c, part + k * 2 * c);
    }
    add_chunks(part, chunks, 2 * c);
    for (int64_t j = 0; j < c; j++) {
        double mean = part[j] / n, var = part[c + j] / n - mean * mean;
        var = var > 0.0 ? var : 0.0;  /* rounding */
        double invstd = 1.0 / sqrt(var + eps), scale = weight[j] * invstd;
        stats[j] = (float)mean, stats[c + j] = (float)invstd;
        stats[2 * c + j] = (float)scale, stats[3 * c + j] = (float)(bias[j] - mean * scale);
        running_mean[j] = (float)(momentum * mean + (1.0 - momentum) * running_mean[j]);
        running_var[j] = (float)(momentum * var * n / (n - 1) + (1.0 - momentum) * running_var[j]);
    }
    free(part);
    PARALLEL(threads, chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t first = k * rows, count = first + rows < n ? rows : n - first;
        scale_relu(x + first * c, count, c, stats, out + first * c);
    }
    return 0;
}

/* batch_norm_relu's backward from grad, the gradient of out: grad_x (n, c) and per channel grad_weight
   and grad_bias; stats as the forward left them. ReLU's mask is recomputed from x by the forward's
   arithmetic, so out need not be kept. Two passes over x and grad: the channel sums, then grad_x. */
int batch_norm_relu_backward(const float *restrict grad, const float *restrict x, int64_t n, int64_t c,
                             const float *restrict weight, const float *restrict stats,
                             float *restrict grad_x, float *restrict grad_weight, float *restrict grad_bias,
                             int threads) {
    int64_t rows = chunk_rows(c), chunks = (n + rows - 1) / rows;
    double *part = calloc((size_t)(chunks * 2 * c), sizeof(double));
    float *terms = malloc((size_t)(3 * c) * sizeof(float));
    if (!part || !terms) {
        free(part), free(terms);
        return -1;
    }
    PARALLEL(threads, chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t first = k * rows, count = first + rows < n ? rows : n - first;
        relu_grad_sums(grad + first * c, x + first * c, count, c, stats, part + k * 2 * c);
    }
    add_chunks(part, chunks, 2 * c);
    /* batch norm's backward: a = weight / std, d = a * grad_weight / (n * std), e = a * grad_bias / n */
    for (int64_t j = 0; j < c; j++) {
        double invstd = stats[c + j], a = weight[j] * invstd;
        double gw = part[c + j] * invstd, gb = part[j];
        grad_weight[j] = (float)gw, grad_bias[j] = (float)gb;
        terms[j] = (float)a, terms[c + j] = (float)(a * invstd * gw / n);
        terms[2 * c + j] = (float)(a * gb / n);
    }
    free(part);
    PARALLEL(threads, chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t first = k * rows, count = first + rows < n ? rows : n - first;
        relu_grad_input(grad + first * c, x + first * c, count, c, stats, terms, grad_x + first * c);
    }
    free(terms);
    return 0;
}
"""

# no -march=native: the cached library must run on any x86-64/arm64 that shares the state directory;
# -fno-math-errno lets sqrtf vectorise, -fopenmp-simd a marked sum. OpenMP threads where the compiler has
# them, else the same loops serial.
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-fopenmp-simd", "-fPIC", "-shared", "-std=c99"]
OPENMP = ["-fopenmp"]
NO_CLONES = ["-DNO_CLONES"]
_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_float
_T = ctypes.c_int
_D = ctypes.c_double
SIGNATURES = {
    "unique_rows": ([_P, _I, _P, _P, _P], _I),
    "gather_rows": ([_P, _P, _I, _I, _P], None),
    "sum_rows": ([_P, _P, _I, _I, _P], None),
    "adam_rows": ([_P, _P, _P, _P, _I, _I, _F, _F, _F, _F, _F, _P, _T], None),
    "adagrad_rows": ([_P, _P, _P, _P, _I, _I, _F, _F, _F, _P, _T], None),
    "pool_rows": ([_P, _P, _P, _I, _P, _I, _I, _I, _I, _P, _T], None),
    "pool_rows_backward": ([_P, _P, _P, _I, _P, _I, _I, _I, _I, _P], None),
    "mix_experts": ([_P, _P, _P, _I, _I, _I, _I, _I, _P, _T], None),
    "mix_experts_backward": ([_P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _P, _T], None),
    "batch_norm_relu": ([_P, _I, _I, _P, _P, _D, _D, _P, _P, _P, _P, _T], _T),
    "batch_norm_relu_backward": ([_P, _P, _I, _I, _P, _P, _P, _P, _P, _T], _T),
}


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (disabled, no compiler, or a failed build: logged once)."""
    if os.environ.get("MTL_NATIVE_KERNELS", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler found: embedding rows are updated by the pure-torch path")
        return None
    errors = []
    # each later attempt drops what a compiler may lack: the CPU-specific clones, then OpenMP
    for flags in ([*FLAGS, *OPENMP], [*FLAGS, *OPENMP, *NO_CLONES], FLAGS, [*FLAGS, *NO_CLONES]):
        try:
            lib = ctypes.CDLL(str(_build(compiler, flags)))
        except (OSError, subprocess.CalledProcessError) as error:
            errors.append(str(error))
            continue
        for name, (arguments, result) in SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = arguments, result
        return lib
    log.warning("C kernels unavailable (%s): the pure-torch path runs instead", "; ".join(errors))
    return None


def _build(compiler: str, flags: list[str]) -> Path:
    """The shared library for ``flags``, compiled once into the state directory."""
    from mtl.paths import state_dir

    digest = hashlib.sha256((SOURCE + " ".join(flags)).encode()).hexdigest()[:16]
    target = state_dir() / "kernels" / f"row_kernels-{digest}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            source, built = Path(scratch) / "row_kernels.c", Path(scratch) / "row_kernels.so"
            source.write_text(SOURCE)
            command = [compiler, *flags, "-o", str(built), str(source), "-lm"]
            subprocess.run(command, check=True, capture_output=True, text=True)
            built.replace(target)  # atomic: a concurrent build ends with one complete file
    return target


def _usable(*tensors: Tensor) -> bool:
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def unique_rows(ids: Tensor, marker: Tensor) -> tuple[Tensor, Tensor] | None:
    """(distinct ids in first-seen order, int64; inverse, shaped like ``ids``) or None."""
    lib = library()
    if lib is None or ids.dtype != torch.int32 or not _usable(ids, marker):
        return None
    unique = torch.empty(ids.numel(), dtype=torch.int64)
    inverse = torch.empty(ids.shape, dtype=torch.int64)
    u = lib.unique_rows(ids.data_ptr(), ids.numel(), marker.data_ptr(), unique.data_ptr(), inverse.data_ptr())
    return unique[:u], inverse


def gather_rows(weight: Tensor, ids: Tensor) -> Tensor:
    """``weight.index_select(0, ids)`` (``ids`` int64), the table's rows fetched ahead of their use."""
    lib = library()
    if lib is None or ids.dtype != torch.int64 or not native(weight) or not _usable(weight, ids):
        return weight.index_select(0, ids)
    out = weight.new_empty(len(ids), weight.shape[1])
    lib.gather_rows(weight.data_ptr(), ids.data_ptr(), len(ids), weight.shape[1], out.data_ptr())
    return out


def sum_rows(grad: Tensor, inverse: Tensor, out: Tensor) -> bool:
    """``out.index_add_(0, inverse, grad)`` in one pass; False where the kernel cannot run."""
    lib = library()
    if lib is None or not (grad.dtype == out.dtype == torch.float32 and inverse.dtype == torch.int64):
        return False
    if not _usable(grad, inverse, out):
        return False
    lib.sum_rows(grad.data_ptr(), inverse.data_ptr(), len(inverse), grad.shape[1], out.data_ptr())
    return True


def _rows_ok(weight: Tensor, ids: Tensor, grad: Tensor, *state: Tensor) -> bool:
    return (
        library() is not None
        and all(t.dtype == torch.float32 for t in (weight, grad, *state))
        and ids.dtype == torch.int64
        and _usable(weight, ids, grad, *state)
    )


def adam_rows(weight, moments, ids, grad, *, step_size, beta1, beta2, eps, decay, row_decay=None) -> bool:
    """Lazy Adam on rows ``ids`` in place (``moments``: ``(rows, 2, d)``; L2 ``row_decay[row]`` per row,
    else ``decay``); False where it cannot run."""
    extra = () if row_decay is None else (row_decay,)
    if not _rows_ok(weight, ids, grad, moments, *extra):
        return False
    library().adam_rows(
        weight.data_ptr(), moments.data_ptr(), ids.data_ptr(), grad.data_ptr(),
        len(ids), weight.shape[1], step_size, beta1, beta2, eps, decay,
        None if row_decay is None else row_decay.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return True


def adagrad_rows(weight, total, ids, grad, *, lr, eps, decay, row_decay=None) -> bool:
    """Adagrad on rows ``ids`` in place (L2 as ``adam_rows``); False where the kernel cannot run (caller
    falls back)."""
    extra = () if row_decay is None else (row_decay,)
    if not _rows_ok(weight, ids, grad, total, *extra):
        return False
    library().adagrad_rows(
        weight.data_ptr(), total.data_ptr(), ids.data_ptr(), grad.data_ptr(), len(ids), weight.shape[1],
        lr, eps, decay, None if row_decay is None else row_decay.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return True


def native(*tensors: Tensor) -> bool:
    """Whether the kernels below can take these float tensors: built, on the CPU, in float32."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and library() is not None


def _address(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _contiguous(*tensors: Tensor | None) -> list[Tensor | None]:
    return [None if t is None else t.contiguous() for t in tensors]


def _width(weight: Tensor | None) -> int:
    return 0 if weight is None else weight.shape[1]


# The kernels below assume ``native`` holds for their float tensors (the callers check).


def pool_rows(rows: Tensor, inverse: Tensor, weight: Tensor | None, bag: Tensor, bags: int) -> Tensor:
    """``(n, bags, d)``: per row of ``inverse`` ``(n, c)`` (int64), the sum of ``rows[inverse]`` over the
    columns of each bag (``bag``: ``(c,)`` int64 column -> bag), the last ``weight.shape[1]`` columns
    weighted by ``weight`` (None: no column is)."""
    rows, inverse, weight, bag = _contiguous(rows, inverse, weight, bag)
    (n, c), d = inverse.shape, rows.shape[1]
    out = rows.new_empty(n, bags, d)
    library().pool_rows(
        rows.data_ptr(), inverse.data_ptr(), _address(weight), _width(weight), bag.data_ptr(), n, c, bags, d,
        out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return out


def pool_rows_backward(
    grad: Tensor, inverse: Tensor, weight: Tensor | None, bag: Tensor, distinct: int
) -> Tensor:
    """The gradient of ``pool_rows`` with respect to its ``(distinct, d)`` rows."""
    grad, inverse, weight, bag = _contiguous(grad, inverse, weight, bag)
    n, c = inverse.shape
    out = grad.new_zeros(distinct, grad.shape[2])
    library().pool_rows_backward(
        grad.data_ptr(), inverse.data_ptr(), _address(weight), _width(weight), bag.data_ptr(), n, c,
        grad.shape[1], grad.shape[2], out.data_ptr(),
    )  # fmt: skip
    return out


def mix_experts(experts: Tensor, weights: Tensor, select: Tensor) -> Tensor:
    """``(n, t, d)``: gate ``t``'s mixture of ``experts`` ``(n, e, d)`` ``select[t]`` (``(t, g)`` int64) with
    ``weights`` ``(t, g, n)``."""
    experts, weights, select = _contiguous(experts, weights, select)
    (n, e, d), (t, g) = experts.shape, select.shape
    out = experts.new_empty(n, t, d)
    library().mix_experts(
        weights.data_ptr(), experts.data_ptr(), select.data_ptr(), n, t, g, e, d, out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out


def mix_experts_backward(
    grad: Tensor, weights: Tensor, experts: Tensor, select: Tensor
) -> tuple[Tensor, Tensor]:
    """(gradient of the weights, of the experts) of ``mix_experts``."""
    grad, weights, experts, select = _contiguous(grad, weights, experts, select)
    (n, e, d), (t, g) = experts.shape, select.shape
    grad_weights, grad_experts = weights.new_empty(t, g, n), experts.new_empty(n, e, d)
    library().mix_experts_backward(
        grad.data_ptr(), weights.data_ptr(), experts.data_ptr(), select.data_ptr(), n, t, g, e, d,
        grad_weights.data_ptr(), grad_experts.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return grad_weights, grad_experts


def batch_norm_relu(x, weight, bias, running_mean, running_var, *, momentum, eps) -> tuple[Tensor, Tensor]:
    """(``relu(batch_norm(x))`` with the batch's statistics, the ``(4, c)`` stats its backward takes) of ``x``
    ``(n, c)``, ``n > 1``; ``running_mean`` and ``running_var`` (contiguous) are updated in place."""
    x, weight, bias = _contiguous(x, weight, bias)
    out, stats = torch.empty_like(x), x.new_empty(4, x.shape[1])
    status = library().batch_norm_relu(
        x.data_ptr(), *x.shape, weight.data_ptr(), bias.data_ptr(), eps, momentum, running_mean.data_ptr(),
        running_var.data_ptr(), stats.data_ptr(), out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    if status:
        raise MemoryError("batch_norm_relu: no memory for the per-chunk channel sums")
    return out, stats


def batch_norm_relu_backward(
    grad: Tensor, x: Tensor, weight: Tensor, stats: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of ``batch_norm_relu``'s ``x``, ``weight`` and ``bias``."""
    grad, x, weight = _contiguous(grad, x, weight)
    grad_x, grad_weight, grad_bias = torch.empty_like(x), torch.empty_like(weight), torch.empty_like(weight)
    status = library().batch_norm_relu_backward(
        grad.data_ptr(), x.data_ptr(), *x.shape, weight.data_ptr(), stats.data_ptr(), grad_x.data_ptr(),
        grad_weight.data_ptr(), grad_bias.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    if status:
        raise MemoryError("batch_norm_relu_backward: no memory for the per-chunk channel sums")
    return grad_x, grad_weight, grad_bias
