"""The only file that touches nutpie's internals (pinned ``nutpie>=0.16.8,<0.17``).

bayeslmm hands nutpie a numba C callback the way nutpie's own numba backend does: by
constructing its ``compile_pymc.CompiledPyMCModel`` dataclass, which is not a documented
API.  Its field list moved within 0.16.x: 0.16.9 added the required ``shared_var_keys``
(a dict from shared variables to keys; we have none) and ``reparameterized_names``
(keyword-only, optional).  ``compiled_cfunc_model`` therefore fills the fields by name from
the dataclass's own field list, so both layouts work, and names the field it cannot fill
instead of failing inside nutpie.  ``low_rank_kwargs`` asks for the low-rank mass matrix in
the spelling the installed ``nutpie.sample`` takes (``adaptation="low_rank"`` where it
exists, else the older ``low_rank_modified_mass_matrix=True``, deprecated in 0.16.9).

tests/test_nutpie_adapter.py is the contract test: the field lists of 0.16.8 and of the
newest 0.16.x (read from nutpie's source), and the installed version's.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import numpy as np

__all__ = ["compiled_cfunc_model", "low_rank_kwargs", "from_pyfunc", "sample", "KNOWN_FIELDS"]

# every field of CompiledPyMCModel in the 0.16.x releases read, and what we pass for it
KNOWN_FIELDS = (
    "compiled_logp_func", "compiled_expand_func", "initial_point_func", "shared_data",
    "shared_var_keys", "user_data", "n_expanded", "shape_info", "logp_func", "expand_func",
    "dims", "reparameterized_names", "_n_dim", "_shapes", "_coords",
)


def cfunc_field_values(logp_cfunc, expand_cfunc, user_data: np.ndarray, ndim: int,
                       initial_point_func: Callable) -> dict:
    """The value of every field we know, for a flat parameter vector ``theta``."""
    return {
        "compiled_logp_func": logp_cfunc, "compiled_expand_func": expand_cfunc,
        "initial_point_func": initial_point_func, "shared_data": {}, "shared_var_keys": {},
        "user_data": user_data, "n_expanded": ndim,
        "shape_info": (["theta"], [slice(0, ndim)], [(ndim,)]), "logp_func": None,
        "expand_func": None, "dims": {}, "reparameterized_names": None, "_n_dim": ndim,
        "_shapes": {"theta": (ndim,)}, "_coords": {},
    }


def fill_fields(cls, values: dict):
    """Build dataclass ``cls`` from ``values`` by its own field list: unknown optional fields
    keep their defaults; an unknown required field is a clear error."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in values:
            kwargs[field.name] = values[field.name]
        elif (field.default is dataclasses.MISSING
              and field.default_factory is dataclasses.MISSING):
            import nutpie

            raise RuntimeError(
                f"nutpie {nutpie.__version__}'s {cls.__name__} has a required field "
                f"{field.name!r} that bayeslmm does not know; install nutpie 0.16.8-0.16.11 "
                "or pass backend='pymc'")
    return cls(**kwargs)


def compiled_cfunc_model(logp_cfunc, expand_cfunc, user_data: np.ndarray, ndim: int,
                         initial_point_func: Callable):
    """nutpie's compiled model for a numba ``cfunc`` log density over ``theta`` (ndim,)."""
    from nutpie.compile_pymc import CompiledPyMCModel

    return fill_fields(CompiledPyMCModel, cfunc_field_values(
        logp_cfunc, expand_cfunc, user_data, ndim, initial_point_func))


def low_rank_kwargs(sample_func: Callable | None = None) -> dict:
    """Keyword arguments of ``nutpie.sample`` that select the low-rank mass matrix."""
    if sample_func is None:
        import nutpie

        sample_func = nutpie.sample
    try:
        parameters = inspect.signature(sample_func).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        parameters = {}
    if "adaptation" in parameters:
        return {"adaptation": "low_rank"}
    return {"low_rank_modified_mass_matrix": True}


def from_pyfunc(*args, **kwargs):
    """nutpie's documented Python-callback frontend (``compiled_pyfunc.from_pyfunc``)."""
    from nutpie.compiled_pyfunc import from_pyfunc as build

    return build(*args, **kwargs)


def sample(compiled, **kwargs):
    """``nutpie.sample``; a panic inside nutpie's Rust code (``PanicException``, which
    derives from BaseException, not Exception) becomes a RuntimeError."""
    import nutpie

    try:
        return nutpie.sample(compiled, **kwargs)
    except (RuntimeError, ValueError):
        raise
    except BaseException as err:  # pyo3's PanicException
        if type(err).__name__ != "PanicException":
            raise
        raise RuntimeError(f"nutpie stopped: {str(err).splitlines()[0] if str(err) else err}"
                           ) from None
