"""Internal centering and scaling of the data, mapped back exactly.

An engine fits the model on data of unit scale and maps every estimate back, so a result
does not depend on the units of the data (issue 10: sleepstudy with Days x 1e4 gave a
32,000x wrong SE, penicillin's response x 1e-6 + 1e7 a wrong sigma; the criterion was noisy
at 1e-4 once |mean(y)| >> sigma because y'y - ... cancelled catastrophically).

With an intercept in X:   y~ = (y - ybar) / s_y,   x~_j = (x_j - xbar_j) / d_j   (j != int)
without one:              y~ = y / s_y,            x~_j = x_j / d_j
and every random-effects column  z~_ka = z_ka / e_ka  (RMS scaling only: centering Z would
change the model).  Then, exactly,

    X beta = X~ beta~ s_y + ybar 1   with   beta = s_y M beta~ + ybar e_int,
    M = the map from the scaled coefficients (beta_j = beta~_j / d_j,
        beta_int = beta~_int - sum_j xbar_j beta~_j / d_j),
    Z_k b_k = Z~_k b~_k s_y  with  b_ka = s_y b~_ka / e_ka,   lambda_k = diag(1/e_k) lambda~_k,
    sigma = s_y sigma~,
    ML deviance   = deviance~ + 2 n log s_y,
    REML criterion = criterion~ + 2 (n - p) log s_y + 2 sum_j log d_j

(the last term because |R_X| changes with det M = prod 1/d_j).  theta is relative to sigma,
so only the design scaling touches it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..spec import ModelSpec

__all__ = ["DataScaling"]


def _rms(values: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.mean(values * values, axis=0))
    return np.where(scale > 0, scale, 1.0)


def _block_scale(block) -> np.ndarray:
    """RMS of each column; one common RMS where the structure has one SD for all (ar1)."""
    from .covariance import structure_for

    scale = _rms(block.columns)
    if structure_for(block).common_scale:
        scale = np.full(scale.shape, float(np.sqrt(np.mean(scale**2))))
    return scale


@dataclass
class DataScaling:
    """The affine maps between a ``ModelSpec`` and its unit-scale copy ``scaled``."""

    original: ModelSpec
    scaled: ModelSpec
    y_shift: float
    y_scale: float
    x_center: np.ndarray       # (p,), 0 for the intercept (and everywhere without one)
    x_scale: np.ndarray        # (p,), 1 for the intercept
    z_scales: list[np.ndarray]  # per block in spec order, (q_k,)
    intercept: int | None

    @classmethod
    def of(cls, spec: ModelSpec) -> DataScaling:
        intercept = spec.x_names.index("Intercept") if "Intercept" in spec.x_names else None
        y = spec.y
        shift = float(np.mean(y)) if intercept is not None else 0.0
        centered = y - shift
        y_scale = float(np.sqrt(np.mean(centered * centered)))
        if not np.isfinite(y_scale) or y_scale <= 64 * np.finfo(float).eps * abs(shift) \
                or y_scale == 0:
            raise ValueError(
                f"the response {spec.response!r} is constant (every used row is "
                f"{y[0]:.6g}): there is nothing to fit")
        X = spec.X
        center = np.zeros(spec.p)
        if intercept is not None and spec.p:
            center = X.mean(axis=0)
            center[intercept] = 0.0
        xc = X - center
        x_scale = _rms(xc) if spec.p else np.ones(0)
        if intercept is not None:
            x_scale[intercept] = 1.0
        z_scales = [_block_scale(b) for b in spec.blocks]
        blocks = [replace(b, columns=b.columns / sc) for b, sc in
                  zip(spec.blocks, z_scales, strict=True)]
        scaled = replace(spec, y=centered / y_scale, X=xc / x_scale, blocks=blocks)
        return cls(spec, scaled, shift, y_scale, center, x_scale, z_scales, intercept)

    # -- maps back ------------------------------------------------------------------------
    def beta_map(self) -> np.ndarray:
        """M (p x p): beta = s_y M beta~ + ybar e_int."""
        p = self.original.p
        m = np.diag(1.0 / self.x_scale) if p else np.zeros((0, 0))
        if self.intercept is not None:
            m[self.intercept, :] -= self.x_center / self.x_scale
            m[self.intercept, self.intercept] = 1.0
        return m

    def beta(self, beta_scaled: np.ndarray) -> np.ndarray:
        beta = self.y_scale * (self.beta_map() @ beta_scaled)
        if self.intercept is not None:
            beta[self.intercept] += self.y_shift
        return beta

    def vcov_beta(self, vcov_scaled: np.ndarray) -> np.ndarray:
        m = self.beta_map()
        return self.y_scale**2 * (m @ vcov_scaled @ m.T)

    def block_scale(self, k: int) -> np.ndarray:
        """e_k of block k (spec order)."""
        return self.z_scales[k]

    def effects_back(self, effects_scaled: np.ndarray, k: int) -> np.ndarray:
        return self.y_scale * effects_scaled / self.z_scales[k][None, :]

    def criterion_back(self, value: float, reml: bool) -> float:
        spec = self.original
        if reml:
            return (value + 2.0 * (spec.n - spec.p) * np.log(self.y_scale)
                    + 2.0 * float(np.log(self.x_scale).sum()))
        return value + 2.0 * spec.n * np.log(self.y_scale)
