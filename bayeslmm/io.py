"""Save and load Bayesian fits: ``fit.to_netcdf(path)`` and ``bayeslmm.load(path)``.

The file is the fit's ``InferenceData`` (ArviZ's netCDF layout, readable by
``az.from_netcdf``) plus a ``constant_data`` group holding the columns the formula used,
and attributes with the formula, the user's priors, ``centered`` and the package version.
Loading rebuilds the ``Model`` from them (deterministically: same rows, levels and columns),
so ``predict`` works on new data afterwards.
"""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .spec import level_text

__all__ = ["save", "load"]

FORMAT = "bayeslmm-fit-1"


def _priors_to_json(priors: dict | None) -> str:
    if not priors:
        return "{}"
    return json.dumps({key: [type(p).__name__, p.params()] for key, p in priors.items()})


def _priors_from_json(text: str) -> dict:
    from .bayes import priors

    allowed = {cls.__name__: cls for cls in vars(priors).values()
               if isinstance(cls, type) and issubclass(cls, priors.Prior)
               and cls is not priors.Prior}
    out = {}
    for key, (name, params) in json.loads(text).items():
        if name not in allowed or not isinstance(params, dict):
            raise ValueError(f"the file's prior {key!r} is {name!r}, not a bayeslmm prior")
        out[key] = allowed[name](**{str(k): float(v) for k, v in params.items()})
    return out


def save(fit, path: str) -> str:
    """Write a BayesFit to ``path`` (netCDF); returns the path."""
    model = fit.model
    frame = model.data_used
    columns = {}
    categories = {}
    for col in frame.columns:
        values = frame[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            categories[col] = [str(c) for c in values.cat.categories]
            columns[col] = ("row", values.astype(str).to_numpy(dtype=object).astype("U"))
        elif pd.api.types.is_numeric_dtype(values) or values.dtype == bool:
            columns[col] = ("row", values.to_numpy())
        else:  # text, or object-dtype numbers: keep the level order the fit used
            categories[col] = level_text(np.unique(values.to_numpy()))
            columns[col] = ("row", np.asarray(level_text(values.to_numpy()), dtype="U"))
    data = xr.Dataset(columns, coords={"row": np.arange(len(frame))})
    idata = fit.idata.copy()
    if "constant_data" in idata.groups():
        del idata.constant_data
    idata.add_groups({"constant_data": data})
    idata.constant_data.attrs.update({
        "bayeslmm_format": FORMAT,
        "formula": model.formula,
        "priors": _priors_to_json(model.user_priors),
        "centered": json.dumps(model.centered),
        "residual": json.dumps(_residual_args(model)),
        "categories": json.dumps(categories),
        "dtypes": json.dumps({c: str(frame[c].dtype) for c in frame.columns}),
        "elapsed": float(fit.elapsed),
        "sampler": str(fit.sampler),
    })
    idata.to_netcdf(path)
    return path


def _residual_args(model) -> dict:
    """The model's ``residual=`` and ``sigma=`` as strings (rebuilt by ``load``)."""
    term = model.residual_term
    out = {}
    if term.kind != "iid":
        group = f" | {':'.join(term.group)}" if term.group else ""
        out["residual"] = f"{term.kind}({term.occasion}{group})"
    if term.variance_by:
        out["sigma"] = "~ " + ":".join(term.variance_by)
    return out


def load(path: str):
    """Read a fit written by ``BayesFit.to_netcdf``.

    Returns
    -------
    BayesFit
        With its ``Model`` rebuilt, so ``predict``, ``compare_reml`` and ``summary`` work.
    """
    from .bayes import BayesFit, Model

    idata = az.from_netcdf(path)
    if "constant_data" not in idata.groups() or \
            idata.constant_data.attrs.get("bayeslmm_format") != FORMAT:
        raise ValueError(f"{path!r} is not a bayeslmm fit (no bayeslmm constant_data group)")
    const = idata.constant_data
    attrs = const.attrs
    categories = json.loads(attrs["categories"])
    dtypes = json.loads(attrs["dtypes"])
    frame = pd.DataFrame({name: const[name].to_numpy() for name in const.data_vars})
    for col, cats in categories.items():
        frame[col] = pd.Categorical(frame[col].astype(str), categories=cats)
    for col, dtype in dtypes.items():
        if col not in categories and dtype in ("bool",):
            frame[col] = frame[col].astype(bool)
    residual = json.loads(attrs.get("residual", "{}"))
    model = Model(attrs["formula"], frame, priors=_priors_from_json(attrs["priors"]),
                  centered=json.loads(attrs["centered"]), residual=residual.get("residual"),
                  sigma=residual.get("sigma"))
    del idata.constant_data
    fit = BayesFit(model, idata, float(attrs.get("elapsed", np.nan)))
    fit.sampler = str(attrs.get("sampler", "full"))
    return fit
