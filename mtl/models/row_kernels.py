"""Small C kernels for the row-wise embedding path and expert gating, compiled at first use with the system
C compiler.

Loops that torch runs as several passes with temporaries, or as many tiny ops at the shapes these models
have: the distinct rows of a batch with the inverse map (a marker array instead of a sort), the
per-field weighted sums of the looked-up rows and, backward, each distinct row's gradient (one pass each
instead of a gather, a product, a split-and-sum and a scatter), the lazy Adam / Adagrad update of touched
rows (each row read and written once), and gated mixtures of experts with their backward. Loops over
independent rows run on ``torch.get_num_threads()`` OpenMP threads where the compiler has OpenMP; the
gradient scatter into shared rows stays serial. The shared library is cached under
``<state dir>/kernels`` keyed by the source's hash. Without a compiler, on anything but float32 CPU
tensors, or with ``MTL_NATIVE_KERNELS=0``, callers get ``None``/``False`` (or ``native()`` says no) and
use their pure-torch path, which computes the same values.
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

/* distinct ids in first-seen order and each id's position among them; marker: -1 per table row,
   left at -1 on return */
int64_t unique_rows(const int32_t *ids, int64_t n, int32_t *marker, int64_t *unique, int64_t *inverse) {
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        int32_t slot = marker[id];
        if (slot < 0) { slot = (int32_t)u; marker[id] = slot; unique[u++] = id; }
        inverse[i] = slot;
    }
    for (int64_t k = 0; k < u; k++) marker[unique[k]] = -1;
    return u;
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
"""

# no -march=native: the cached library must run on any x86-64/arm64 that shares the state directory;
# -fno-math-errno lets sqrtf vectorise, -fopenmp-simd a marked sum. OpenMP threads where the compiler has
# them, else the same loops serial.
FLAGS = ["-O3", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared", "-std=c99"]
OPENMP = ["-fopenmp"]
_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_float
_T = ctypes.c_int
SIGNATURES = {
    "unique_rows": ([_P, _I, _P, _P, _P], _I),
    "sum_rows": ([_P, _P, _I, _I, _P], None),
    "adam_rows": ([_P, _P, _P, _P, _I, _I, _F, _F, _F, _F, _F, _P, _T], None),
    "adagrad_rows": ([_P, _P, _P, _P, _I, _I, _F, _F, _F, _P, _T], None),
    "pool_rows": ([_P, _P, _P, _I, _P, _I, _I, _I, _I, _P, _T], None),
    "pool_rows_backward": ([_P, _P, _P, _I, _P, _I, _I, _I, _I, _P], None),
    "mix_experts": ([_P, _P, _P, _I, _I, _I, _I, _I, _P, _T], None),
    "mix_experts_backward": ([_P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _P, _T], None),
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
    for flags in ([*FLAGS, *OPENMP], FLAGS):
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


# The four below assume ``native`` holds for their float tensors (the callers check).


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
