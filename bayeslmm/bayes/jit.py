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

numba keys the cache of an entry point by the entry's own source file, not its callees'.
So this module fingerprints every source file the compiled entry points are built from
(``KERNEL_SOURCES``, together with numba's version) and, when the fingerprint differs from
the one stored beside the cache, deletes this package's cached entries first: a changed
helper (``unconstrained.py``, ``callback_abi.py``, ...) always recompiles.
"""

import hashlib
import os
from pathlib import Path

import numba
from numba import njit

__all__ = ["internal", "internal_fastmath", "entry", "FASTMATH", "KERNEL_SOURCES",
           "invalidate_stale_cache"]

KERNEL_SOURCES = ("jit.py", "callback_abi.py", "marginal_kernel.py", "kernel_cfunc.py",
                  "posterior_terms.py",
                  "marginal_posterior.py", "marginal_cfunc.py", "unconstrained.py",
                  "partial_posterior.py")
_HERE = Path(__file__).resolve().parent


def _fingerprint() -> str:
    digest = hashlib.sha256(numba.__version__.encode())
    for name in KERNEL_SOURCES:
        digest.update(name.encode())
        digest.update((_HERE / name).read_bytes())
    return digest.hexdigest()


def invalidate_stale_cache() -> None:
    """Delete this package's numba cache files when the kernel sources changed since they
    were written (no-op when the cache directory is not writable: numba then uses its own
    per-user cache, which it keys by the entry file's timestamp only)."""
    dirs = [_HERE / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    try:
        current = _fingerprint()
    except OSError:  # sources not readable (a zipped install): nothing to compare
        return
    for directory in dirs:
        marker = directory / "bayeslmm-kernels.sha256"
        try:
            if marker.exists() and marker.read_text() == current:
                continue
            if directory.is_dir():
                for path in directory.rglob("*"):
                    if path.suffix in (".nbi", ".nbc") and (
                            path.name.split(".")[0] + ".py") in KERNEL_SOURCES:
                        path.unlink(missing_ok=True)
            directory.mkdir(parents=True, exist_ok=True)
            marker.write_text(current)
        except OSError:
            continue


invalidate_stale_cache()

# reassociation lets inner products vectorize (kb07: 4.0 -> 2.9 ms a gradient); no
# 'nnan'/'ninf': the kernels' -inf and finiteness checks must stay
FASTMATH = {"reassoc", "contract"}
internal = njit(nogil=True, error_model="numpy", no_cpython_wrapper=True)
# the likelihood kernel's dense helpers: numba sets fastmath flags per instruction when it
# compiles the callee, so a helper without them stays scalar even inside a fastmath caller
internal_fastmath = njit(nogil=True, error_model="numpy", no_cpython_wrapper=True,
                         fastmath=FASTMATH)
entry = njit(cache=True, nogil=True, error_model="numpy")
