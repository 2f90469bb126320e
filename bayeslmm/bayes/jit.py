"""The two numba decorators of the Bayesian kernels.

``internal``: functions that only jitted code calls.  No CPython wrapper and no cache of
their own: numba links each callee into every caller and re-optimizes it there anyway, so
they are compiled once per process when an entry point that uses them compiles, and are
cached inside that entry point.  ``entry``: functions Python calls (``cache=True``).

Measured on the marginal C callback with empty caches: wrappers and separate caches of the
callees cost ~1.5 s of the first compile on this VM.

The likelihood kernel is neither: it is compiled only as a C callback
(``kernel_cfunc.py``) and called through its address, so that it is not linked and
re-optimized inside each caller (see ``callback_abi.py``).

Caution for development: numba's cache of an entry point is keyed by the entry's own source
file, not its callees'.  After editing a kernel module, delete
``bayeslmm/bayes/__pycache__/*.nbi`` and ``*.nbc`` (or touch the entry modules,
``marginal_cfunc.py`` and ``partial_posterior.py``; the kernel callback's entry is its own
file, ``marginal_kernel.py``).  An installed package is unaffected.
"""

from numba import njit

__all__ = ["internal", "entry"]

internal = njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
entry = njit(cache=True, nogil=True, error_model="numpy")
