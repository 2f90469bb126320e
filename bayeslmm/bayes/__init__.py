"""Bayesian engine: priors, the PyMC model builder, NUTS sampling and ``BayesFit``.

``Model``, ``BayesFit`` and ``compare`` are imported on first use (they import ArviZ), so
importing a submodule such as the numba kernels stays light: ``api.fit`` compiles the
marginal sampler's kernel in a background thread while the rest is imported.
"""

from importlib import import_module

from .priors import (
    LKJ,
    Exponential,
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    StudentT,
)

_LAZY = {"Model": ".model", "BayesFit": ".result", "compare": ".result"}

__all__ = ["Model", "BayesFit", "compare", "Prior", "Normal", "StudentT", "Flat",
           "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "LKJ"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'bayeslmm.bayes' has no attribute {name!r}")


def compile_in_background() -> None:
    """Compile (or load from numba's cache) the marginal sampler's C callback in a daemon
    thread, so that the compile overlaps the imports and the REML fit that come first.
    Importing ``marginal_cfunc`` afterwards waits for the thread (Python's import lock)."""
    import threading

    threading.Thread(target=import_module, args=(".marginal_cfunc", __name__), daemon=True,
                     name="bayeslmm-compile").start()
