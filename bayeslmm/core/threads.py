"""BLAS threads: one for small dense systems and inside sampler threads.

Multithreaded OpenBLAS on small matrices with the other core busy is 50-400x slower
(a 191 x 191 Cholesky: 12-85 ms instead of 0.2 ms on a 2-core VM), and nutpie's chains are
threads already.  threadpoolctl (a dependency) limits every BLAS the process loaded.
"""

from __future__ import annotations

import contextlib

__all__ = ["single_blas_thread", "blas_threads_for", "SINGLE_THREAD_MAX"]

SINGLE_THREAD_MAX = 2000  # dense systems up to this many rows run on one BLAS thread


def single_blas_thread():
    """A context in which BLAS uses one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a declared dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def blas_threads_for(rows: int):
    """One BLAS thread for a dense system of up to ``SINGLE_THREAD_MAX`` rows, else as is."""
    return single_blas_thread() if rows <= SINGLE_THREAD_MAX else contextlib.nullcontext()
