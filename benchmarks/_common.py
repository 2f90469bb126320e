"""What every benchmark prints about the machine (the scripts import it as ``_common``,
being run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations


def blas_info() -> str:
    """The BLAS libraries numpy runs on, with their kernel and thread count (threadpoolctl):
    ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` may select a slower kernel on these
    machines, so every table says which one ran."""
    from threadpoolctl import threadpool_info

    return "; ".join(f"{i.get('internal_api')} {i.get('version')} "
                     f"({i.get('architecture')}, {i.get('num_threads')} threads)"
                     for i in threadpool_info() if i.get("user_api") == "blas")
