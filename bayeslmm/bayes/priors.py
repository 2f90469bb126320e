"""Priors: a small declarative API, defaults scaled to the data, resolution by name.

A user writes ``priors={"Days": Normal(0, 10), "sd": HalfNormal(50), "sd_Subject":
HalfStudentT(3, 20), "cor": LKJ(2), "sigma": Exponential(0.1), "Intercept": ...}``.
Keys are resolved most specific first:

* fixed effects: the coefficient's name (``"Days"``, ``"Sex[Female]"``), then ``"fixed"``
  (every slope; the intercept has its own key ``"Intercept"``);
* random-effect SDs: ``"sd_<factor>[<term>]"``, then ``"sd_<factor>"``, then ``"sd"``;
* correlations: ``"cor_<factor>"``, then ``"cor"``;
* the residual SD: ``"sigma"``.

Defaults (documented in docs/priors.md), in the spirit of rstanarm/Bambi/brms:

* the intercept is given a prior *for centered predictors* (brms's and rstanarm's
  convention: the model samples the intercept at the mean of each predictor column, which
  also decorrelates the posterior): Normal(mean(y), 2.5 sd(y));
* slope of column x: Normal(0, 2.5 sd(y) / sd(x));
* SD of a random-effect term with column z: HalfStudentT(3, sd(y) / rms(z)) (rms(z) = 1 for
  an intercept; brms uses one scale, mad(y), for every SD);
* correlations: LKJ(eta=1), uniform over correlation matrices (as brms);
* sigma: HalfStudentT(3, sd(y)) (brms: half student_t(3, 0, mad(y))).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

__all__ = [
    "Prior", "Normal", "StudentT", "Flat", "HalfNormal", "HalfStudentT", "HalfCauchy",
    "Exponential", "LKJ", "Uniform", "ResolvedPriors", "resolve_priors",
]


@dataclass(frozen=True)
class Prior:
    """Base class: a named PyMC distribution with validated parameters."""

    kind = "location"  # "location" (fixed effects), "scale" (SDs, sigma), "corr" (LKJ)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float | np.floating | np.integer) or not np.isfinite(
                value
            ):
                raise ValueError(f"{type(self).__name__}: {f.name} must be a finite number, "
                                 f"got {value!r}")
        self._validate()

    def _validate(self) -> None:
        pass

    def _positive(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be positive, got "
                                 f"{getattr(self, name)!r}")

    def params(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:.4g}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def pymc(self, name: str | None, **kwargs):
        """A PyMC random variable (``name`` given, inside a model) or a ``.dist``."""
        import pymc as pm

        dist = getattr(pm, self.pymc_name)
        params = self._pymc_params()
        if name is None:
            return dist.dist(**params, **kwargs)
        return dist(name, **params, **kwargs)

    @property
    def pymc_name(self) -> str:
        return type(self).__name__

    def _pymc_params(self) -> dict[str, float]:
        return self.params()


@dataclass(frozen=True)
class Normal(Prior):
    """Normal(mu, sigma)."""

    mu: float = 0.0
    sigma: float = 1.0

    def _validate(self):
        self._positive("sigma")


@dataclass(frozen=True)
class StudentT(Prior):
    """Student t(nu, mu, sigma)."""

    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0

    def _validate(self):
        self._positive("nu", "sigma")


@dataclass(frozen=True)
class Flat(Prior):
    """Improper flat prior (brms's default for slopes)."""


@dataclass(frozen=True)
class HalfNormal(Prior):
    """Half-normal(sigma) on a standard deviation."""

    sigma: float = 1.0
    kind = "scale"

    def _validate(self):
        self._positive("sigma")


@dataclass(frozen=True)
class HalfStudentT(Prior):
    """Half Student t(nu, sigma) on a standard deviation."""

    nu: float = 3.0
    sigma: float = 1.0
    kind = "scale"

    def _validate(self):
        self._positive("nu", "sigma")


@dataclass(frozen=True)
class HalfCauchy(Prior):
    """Half-Cauchy(beta) on a standard deviation."""

    beta: float = 1.0
    kind = "scale"

    def _validate(self):
        self._positive("beta")


@dataclass(frozen=True)
class Exponential(Prior):
    """Exponential(lam) (rate lam, mean 1/lam) on a standard deviation."""

    lam: float = 1.0
    kind = "scale"

    def _validate(self):
        self._positive("lam")


@dataclass(frozen=True)
class LKJ(Prior):
    """LKJ(eta) on a correlation matrix; eta = 1 is uniform."""

    eta: float = 1.0
    kind = "corr"

    def _validate(self):
        self._positive("eta")


@dataclass(frozen=True)
class Uniform(Prior):
    """Uniform(lower, upper), for a bounded parameter (a residual phi or rho)."""

    lower: float = -1.0
    upper: float = 1.0
    kind = "bounded"

    def _validate(self):
        if not self.lower < self.upper:
            raise ValueError(f"Uniform: lower must be below upper, got {self.lower!r}, "
                             f"{self.upper!r}")


@dataclass
class ResolvedPriors:
    """The prior of every parameter, after defaults and user keys are combined."""

    fixed: dict[str, Prior]
    intercept_centered: bool
    sd: dict[str, dict[str, Prior]]  # factor -> term -> prior
    cor: dict[str, Prior]            # factor -> LKJ (correlated blocks with q >= 2)
    sigma: Prior
    residual: dict[str, Prior] = field(default_factory=dict)  # phi, rho, pacf, cor_residual

    def table(self):
        import pandas as pd

        rows = []
        for name, prior in self.fixed.items():
            note = " (centered predictors)" if name == "Intercept" and self.intercept_centered \
                else ""
            rows.append(("fixed", name, str(prior) + note))
        for factor, terms in self.sd.items():
            for term, prior in terms.items():
                rows.append(("sd", f"{factor}[{term}]", str(prior)))
        for factor, prior in self.cor.items():
            rows.append(("cor", factor, str(prior)))
        rows.append(("sigma", "sigma", str(self.sigma)))
        for name, prior in self.residual.items():
            rows.append(("residual", name, str(prior)))
        return pd.DataFrame(rows, columns=["class", "parameter", "prior"])

    def __str__(self) -> str:
        return self.table().to_string(index=False)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False)


def _check(prior, key: str, kind: str) -> Prior:
    if not isinstance(prior, Prior):
        raise TypeError(f"prior for {key!r} must be a bayeslmm prior such as "
                        f"bayeslmm.Normal(0, 10), got {prior!r}")
    allowed = {"location": ("location",), "scale": ("scale",), "corr": ("corr",),
               "bounded": ("bounded",)}[kind]
    if prior.kind not in allowed:
        wanted = {"location": "Normal, StudentT or Flat", "scale":
                  "HalfNormal, HalfStudentT, HalfCauchy or Exponential", "corr": "LKJ",
                  "bounded": "Uniform"}[kind]
        raise ValueError(f"prior for {key!r} must be {wanted}, got {prior}")
    return prior


def resolve_priors(spec, factor_terms: dict[str, list[tuple[str, np.ndarray]]],
                   correlated: list[str], user: dict | None,
                   residual: dict[str, tuple] | None = None) -> ResolvedPriors:
    """Combine data-scaled defaults with the user's ``priors`` dict.

    Parameters
    ----------
    spec : ModelSpec
    factor_terms : dict
        factor -> list of (term name, per-row column) for every random-effect term.
    correlated : list of str
        Factors that get a correlation matrix.
    user : dict or None
    residual : dict, optional
        name -> (default prior, kind, bounds) of a residual structure's parameters
        (``bayes/residual_terms.py``).

    Raises
    ------
    ValueError
        An unknown key (with the valid keys listed) or a prior of the wrong kind.
    """
    user = dict(user or {})
    y_sd = float(np.std(spec.y, ddof=1)) if spec.n > 1 else 1.0
    y_sd = y_sd if y_sd > 0 else 1.0
    y_mean = float(np.mean(spec.y))
    used: set[str] = set()

    def pick(keys: list[str], default: Prior, kind: str) -> Prior:
        for key in keys:
            if key in user:
                used.add(key)
                return _check(user[key], key, kind)
        return default

    fixed: dict[str, Prior] = {}
    centered = "Intercept" in spec.x_names
    for j, name in enumerate(spec.x_names):
        if name == "Intercept":
            fixed[name] = pick(["Intercept"], Normal(y_mean, 2.5 * y_sd), "location")
            continue
        x_sd = float(np.std(spec.X[:, j], ddof=1))
        scale = 2.5 * y_sd / x_sd if x_sd > 0 else 2.5 * y_sd
        fixed[name] = pick([name, "fixed"], Normal(0.0, scale), "location")
    sd: dict[str, dict[str, Prior]] = {}
    for factor, terms in factor_terms.items():
        sd[factor] = {}
        for term, column in terms:
            rms = float(np.sqrt(np.mean(column**2))) or 1.0
            default = HalfStudentT(3.0, y_sd / rms)
            sd[factor][term] = pick([f"sd_{factor}[{term}]", f"sd_{factor}", "sd"], default,
                                    "scale")
    cor = {factor: pick([f"cor_{factor}", "cor"], LKJ(1.0), "corr") for factor in correlated}
    sigma = pick(["sigma"], HalfStudentT(3.0, y_sd), "scale")
    residual_priors = {}
    for name, (default, kind, bounds) in (residual or {}).items():
        prior = pick([name], default, kind)
        if bounds is not None and (prior.lower < bounds[0] - 1e-12 or
                                   prior.upper > bounds[1] + 1e-12):
            raise ValueError(f"prior for {name!r} must lie within ({bounds[0]:.4g}, "
                             f"{bounds[1]:.4g}), got {prior}")
        residual_priors[name] = prior
    unknown = sorted(set(user) - used - {"fixed", "sd", "cor"})
    # class keys are valid even when no parameter of that class exists, but names are not
    if unknown:
        valid = (["Intercept", "fixed", "sd", "cor", "sigma"]
                 + [n for n in spec.x_names if n != "Intercept"]
                 + [f"sd_{f}" for f in factor_terms] + [f"cor_{f}" for f in correlated]
                 + list(residual or {})
                 + [f"sd_{f}[{t}]" for f, ts in factor_terms.items() for t, _ in ts])
        raise ValueError(f"unknown prior name(s) {', '.join(map(repr, unknown))}; valid names: "
                         f"{', '.join(valid)}")
    for key in ("fixed", "sd", "cor"):
        if key in user:
            _check(user[key], key, {"fixed": "location", "sd": "scale", "cor": "corr"}[key])
    return ResolvedPriors(fixed, centered, sd, cor, sigma, residual_priors)
