"""The marginal likelihood kernel as a C callback, and getting it compiled.

``kernel_callback()`` is ``marginal_kernel.marginal_logp_grad_c`` compiled as a C callback
(``callback_abi.KERNEL_SIG``); the marginal posterior callback and the partial sampler's
density call it through its address, and Python through ``marginal_logp_grad`` (ctypes).
Numba compiles it once per machine and caches it; that compile is the largest part of a
first fit (~5 s of numba's ~8 s on a 2-core VM).

``compile_in_background()``: when numba's cache does not hold the kernel yet and the machine
has a second core, compile it in a helper Python process, started before the fit imports
ArviZ and nutpie and compiles the posterior callback, so the two compiles overlap.
``kernel_callback()`` then waits for the helper and loads the kernel from the cache (or
compiles it here, if the helper failed).  Nothing else is shared with the helper: it only
writes numba's cache, which numba reads and writes atomically.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import cfunc

from .callback_abi import KERNEL_SIG
from .jit import FASTMATH
from .marginal_kernel import marginal_logp_grad_c

__all__ = ["kernel_callback", "compile_in_background", "marginal_logp_grad", "kernel_draws",
           "kernel_loaded"]

HELPER_TIMEOUT = 600.0  # seconds; then the helper is stopped and this process compiles
_helper: subprocess.Popen | None = None


@functools.cache
def kernel_callback():
    """The compiled kernel (a numba ``CFunc``: ``.address``, ``.ctypes``), from numba's
    cache when it is there; waits for a helper compile first."""
    _wait_for_helper()
    return cfunc(KERNEL_SIG, cache=True, error_model="numpy",
                 fastmath=FASTMATH)(marginal_logp_grad_c)


def kernel_loaded() -> bool:
    """Whether this process has the compiled kernel already (no compile to wait for)."""
    return kernel_callback.cache_info().currsize > 0


def marginal_logp_grad(chol_first, chol_rest, sigma, A, C, CR, rest, mu0, wprior, n_obs,
                       g_chol, g_rest, modes_x, modes_b1, noise=None) -> tuple[float, float]:
    """The kernel called from Python (ctypes) on C-contiguous arrays: fills the gradient and
    mode arrays and returns (value, d value / d sigma); see ``marginal_logp_grad_c``.
    ``rest`` is (n_rest, 2) [levels, columns]; ``chol_rest``/``g_rest`` pack the other
    blocks' factors row-major (their SDs when every block is 1 x 1).  With ``noise``
    (r - 1 + m1 q1 standard normals) ``modes_x``/``modes_b1`` receive a draw instead (draw
    mode: no gradients, d/d sigma returned as 0)."""
    out = np.zeros(2)
    rest = np.ascontiguousarray(np.asarray(rest, dtype=np.int64).reshape(-1, 2))
    arrays = [A, C, CR, rest, mu0, wprior, chol_first, chol_rest]
    pointers = [_pointer(a) for a in arrays]
    outputs = [_pointer(a) for a in (g_chol, g_rest, modes_x, modes_b1, out)]
    draw = [0, outputs[-1]] if noise is None else [noise.size, _pointer(noise)]
    m1, q1 = A.shape[0], A.shape[1]
    kernel_callback().ctypes(m1, q1, CR.shape[0], len(mu0), rest.shape[0], float(n_obs),
                             *pointers, float(sigma), *outputs, *draw)
    return float(out[0]), float(out[1])


def kernel_draws(arrays, chol_first: np.ndarray, chol_rest: np.ndarray, sigma: np.ndarray,
                 noise: np.ndarray, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One draw from p(u_rest, beta, b1 | G, sigma, y) per row, by the kernel's draw mode
    on ``workers`` threads (ctypes releases the GIL; default: the usable CPUs, at most 4).

    Parameters
    ----------
    arrays : the kernel's statistics (A, C, CR, rest, mu0, wprior, n_obs)
    chol_first : (D, q1, q1); chol_rest : (D, f) the other blocks' factors packed row-major
    sigma : (D,); noise : (D, r - 1 + m1 q1) standard normals

    Returns
    -------
    x : (D, r - 1) the rest blocks' spherical u (level-major) and centered beta; NaN rows
        where the system did not factor (a warning says how many)
    b1 : (D, m1, q1) the first block's effects
    """
    A, C, CR, rest, mu0, wprior, n_obs = arrays
    m1, q1, r = A.shape[0], A.shape[1], CR.shape[0]
    n_draws = len(sigma)
    x = np.empty((n_draws, r - 1))
    b1 = np.empty((n_draws, m1, q1))
    chol_first = np.ascontiguousarray(chol_first, dtype=float)
    chol_rest = np.ascontiguousarray(np.asarray(chol_rest, dtype=float).reshape(n_draws, -1))
    noise = np.ascontiguousarray(noise, dtype=float)
    rest = np.ascontiguousarray(np.asarray(rest, dtype=np.int64).reshape(-1, 2))
    fixed = [_pointer(a) for a in (A, C, CR, rest, mu0, wprior)]
    function = kernel_callback().ctypes
    dims = (m1, q1, r, len(mu0), rest.shape[0], float(n_obs))

    def run(lo: int, hi: int) -> None:
        g_chol, g_rest = np.empty((q1, q1)), np.empty(max(1, chol_rest.shape[1]))
        out = np.zeros(2)
        scratch = [_pointer(g_chol), _pointer(g_rest)]
        for d in range(lo, hi):
            code = function(*dims, *fixed, _pointer(chol_first[d]), _pointer(chol_rest[d]),
                            float(sigma[d]), *scratch, _pointer(x[d]), _pointer(b1[d]),
                            _pointer(out), noise.shape[1], _pointer(noise[d]))
            if code:
                x[d] = np.nan
                b1[d] = np.nan

    workers = max(1, min(4, _usable_cpus()) if workers is None else workers)
    bounds = np.linspace(0, n_draws, workers + 1).astype(int)
    if workers == 1 or n_draws < 2 * workers:
        run(0, n_draws)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
    failed = int(np.isnan(x[:, :1]).sum())
    if failed:
        warnings.warn(f"{failed} of {n_draws} draws of (G, sigma) gave a system that is not "
                      "positive definite: their beta and random effects are NaN",
                      RuntimeWarning, stacklevel=3)
    return x, b1


def _pointer(array: np.ndarray):
    if array.dtype not in (np.int64, np.float64) or not array.flags.c_contiguous:
        raise TypeError("the kernel needs C-contiguous float64 and int64 arrays, got "
                        f"{array.dtype} {'C' if array.flags.c_contiguous else 'strided'}")
    ctype = ctypes.c_int64 if array.dtype == np.int64 else ctypes.c_double
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def compile_in_background() -> bool:
    """Start compiling the kernel in a helper process if numba's cache lacks it and a
    second CPU is free for it.  Returns whether the kernel still has to be compiled (a first
    fit on this machine), helper or not."""
    global _helper
    if _helper is not None:
        return True
    if kernel_callback.cache_info().currsize or _is_cached():
        return False
    if _usable_cpus() < 2:
        return True
    code = "from bayeslmm.bayes.kernel_cfunc import kernel_callback; kernel_callback()"
    # the helper imports bayeslmm from wherever this process did
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        _helper = subprocess.Popen([sys.executable, "-c", code], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    except OSError:
        _helper = None
    return True


def _is_cached() -> bool:
    """Whether numba's cache holds the compiled kernel (True when that cannot be told:
    then this process compiles it when needed, as without a helper)."""
    try:
        from numba.core.caching import FunctionCache
        from numba.core.registry import cpu_target

        cache = FunctionCache(marginal_logp_grad_c)
        return cache.load_overload(KERNEL_SIG, cpu_target.target_context) is not None
    except Exception:  # noqa: BLE001 - numba internals; any failure means "don't know"
        return True


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _wait_for_helper() -> None:
    global _helper
    if _helper is None:
        return
    try:
        _helper.wait(HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        _helper.kill()
        _helper.wait()
    _helper = None
