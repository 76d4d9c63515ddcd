"""Small C kernels for the row-wise embedding path, compiled at first use with the system C compiler.

Four loops that torch runs as several passes with temporaries: the distinct rows of a batch with the
inverse map (a marker array instead of a sort), the sum of the looked-up rows' gradients per distinct
row (one pass instead of a scatter), and the lazy Adam / Adagrad update of touched rows
(each row read and written once instead of gathered, updated and scattered per state tensor). The shared
library is cached under ``<state dir>/kernels`` keyed by the source's hash. Without a compiler, on
anything but contiguous float32 CPU tensors, or with ``MTL_NATIVE_KERNELS=0``, callers get ``None`` and
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

/* lazy Adam (torch.optim.SparseAdam's arithmetic) with L2 on the touched rows */
/* moments: per table row, the d first moments then the d second moments */
void adam_rows(float *restrict w, float *restrict moments, const int64_t *restrict ids,
               const float *restrict g, int64_t u, int64_t d,
               float step_size, float beta1, float beta2, float eps, float decay) {
    for (int64_t k = 0; k < u; k++) {
        float *wk = w + ids[k] * d;
        float *m = moments + ids[k] * 2 * d, *v = m + d;
        const float *gk = g + k * d;
        for (int64_t j = 0; j < d; j++) {
            float grad = gk[j] + decay * wk[j];
            float mj = m[j], vj = v[j];
            mj += (grad - mj) * (1.0f - beta1);
            vj += (grad * grad - vj) * (1.0f - beta2);
            m[j] = mj; v[j] = vj;
            wk[j] -= mj / (sqrtf(vj) + eps) * step_size;
        }
    }
}

/* Adagrad (torch.optim.Adagrad, no lr decay) with L2 on the touched rows */
void adagrad_rows(float *restrict w, float *restrict s, const int64_t *restrict ids,
                  const float *restrict g, int64_t u, int64_t d,
                  float lr, float eps, float decay) {
    for (int64_t k = 0; k < u; k++) {
        int64_t row = ids[k] * d;
        const float *gk = g + k * d;
        for (int64_t j = 0; j < d; j++) {
            float grad = gk[j] + decay * w[row + j];
            float sj = s[row + j] + grad * grad;
            s[row + j] = sj;
            w[row + j] -= lr * grad / (sqrtf(sj) + eps);
        }
    }
}
"""

# no -march=native: the cached library must run on any x86-64/arm64 that shares the state directory;
# -fno-math-errno lets sqrtf vectorise
FLAGS = ["-O3", "-fno-math-errno", "-fPIC", "-shared", "-std=c99"]
_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_float
SIGNATURES = {
    "unique_rows": ([_P, _I, _P, _P, _P], _I),
    "sum_rows": ([_P, _P, _I, _I, _P], None),
    "adam_rows": ([_P, _P, _P, _P, _I, _I, _F, _F, _F, _F, _F], None),
    "adagrad_rows": ([_P, _P, _P, _P, _I, _I, _F, _F, _F], None),
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
    from mtl.paths import state_dir

    digest = hashlib.sha256((SOURCE + " ".join(FLAGS)).encode()).hexdigest()[:16]
    target = state_dir() / "kernels" / f"row_kernels-{digest}.so"
    try:
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                source, built = Path(scratch) / "row_kernels.c", Path(scratch) / "row_kernels.so"
                source.write_text(SOURCE)
                command = [compiler, *FLAGS, "-o", str(built), str(source), "-lm"]
                subprocess.run(command, check=True, capture_output=True, text=True)
                built.replace(target)  # atomic: a concurrent build ends with one complete file
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        log.warning("C kernels unavailable (%s): embedding rows are updated by the pure-torch path", error)
        return None
    for name, (arguments, result) in SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = arguments, result
    return lib


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


def adam_rows(weight, moments, ids, grad, *, step_size, beta1, beta2, eps, decay) -> bool:
    """Lazy Adam on rows ``ids`` in place (``moments``: ``(rows, 2, d)``); False where it cannot run."""
    if not _rows_ok(weight, ids, grad, moments):
        return False
    library().adam_rows(
        weight.data_ptr(), moments.data_ptr(), ids.data_ptr(), grad.data_ptr(),
        len(ids), weight.shape[1], step_size, beta1, beta2, eps, decay,
    )  # fmt: skip
    return True


def adagrad_rows(weight, total, ids, grad, *, lr, eps, decay) -> bool:
    """Adagrad on rows ``ids`` in place; False where the kernel cannot run (caller falls back)."""
    if not _rows_ok(weight, ids, grad, total):
        return False
    library().adagrad_rows(
        weight.data_ptr(), total.data_ptr(), ids.data_ptr(), grad.data_ptr(), len(ids), weight.shape[1],
        lr, eps, decay,
    )  # fmt: skip
    return True
