"""Shared helpers: golden lme4 values and a comparison that names what differs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden"

# reference case prefix -> bundled data set
DATASET_OF_CASE = {
    "sleep": "sleepstudy", "ortho": "orthodont", "penicillin": "penicillin",
    "pastes": "pastes", "dyestuff": "dyestuff", "dyestuff2": "dyestuff2",
    "ergostool": "ergostool", "radon": "radon", "insteval": "insteval",
}


def load_case(name: str) -> dict:
    """lme4 1.1-31 reference fit from ../shared/refs/lme4 (copied into tests/golden)."""
    return json.loads((GOLDEN / "lme4" / f"{name}.json").read_text())


def shared_case_names() -> list[str]:
    return sorted(p.stem for p in (GOLDEN / "lme4").glob("*.json"))


def extra_goldens() -> dict:
    """Strict-tolerance lme4 refits made by tests/golden/scripts/lme4_extra.R."""
    return json.loads((GOLDEN / "lme4_extra.json").read_text())


def assert_rel(actual, expected, rtol, what, atol=0.0):
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        err = np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300)
        raise AssertionError(
            f"{what}: got {actual}, lme4 {expected}, relative error {err} > {rtol}"
        )


@pytest.fixture(scope="session")
def sleepstudy():
    from bayeslmm.datasets import load

    return load("sleepstudy")


@pytest.fixture(scope="session")
def sleep_fit(sleepstudy):
    """A short Bayesian fit of Reaction ~ Days + (Days | Subject) shared by the fast tests."""
    import bayeslmm

    return bayeslmm.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, draws=150, tune=300,
                        chains=2, random_seed=7, progressbar=False)


def central_differences(func, theta, step: float = 1e-6) -> np.ndarray:
    """Numeric gradient of ``func(theta) -> (value, ...)`` (its first output) by central
    differences along each axis."""
    theta = np.asarray(theta, dtype=float)
    return np.array([(func(theta + step * e)[0] - func(theta - step * e)[0]) / (2 * step)
                     for e in np.eye(theta.size)])


def assert_draws_match_reml(beta, effects, reml, draws: int, atol_floor: float = 0.0):
    """Conditional draws at the REML (G, sigma) with flat priors: beta's mean is the GLS
    estimate (within 4 Monte Carlo SEs), its SD the REML SE (5%), each effect's mean the
    BLUP (within 4 Monte Carlo SEs of the widest effect, plus ``atol_floor``)."""
    se = reml.se.to_numpy()
    assert np.all(np.abs(beta.mean(axis=0) - reml.beta) < 4 * se / np.sqrt(draws))
    np.testing.assert_allclose(beta.std(axis=0), se, rtol=0.05)
    for eff, blup in zip(effects, reml.effects, strict=True):
        spread = eff.std(axis=0)
        np.testing.assert_allclose(eff.mean(axis=0), blup,
                                   atol=float(4 * spread.max() / np.sqrt(draws)) + atol_floor)


def three_factor_data() -> pd.DataFrame:
    """300 simulated rows: g1 (40 levels) x g2 (8) x g3 (6) crossed with repeated level
    pairs, predictors x and z, and a random slope of x by g2 (the partial sampler's tests:
    g1 integrated out, g2 and g3 kept)."""
    rng = np.random.default_rng(11)
    n = 300
    data = pd.DataFrame({"g1": rng.integers(0, 40, n), "g2": rng.integers(0, 8, n),
                         "g3": rng.integers(0, 6, n), "x": rng.normal(size=n),
                         "z": rng.normal(size=n)})
    data["y"] = (2.0 + data.x + rng.normal(0, 0.8, 40)[data.g1] + rng.normal(0, 0.6, 8)[data.g2]
                 + data.x * rng.normal(0, 0.3, 8)[data.g2] + rng.normal(0, 0.4, 6)[data.g3]
                 + rng.normal(0, 1.0, n))
    return data


def nested_factor_data() -> pd.DataFrame:
    """``three_factor_data`` with a factor h (3 levels) that g2 is nested in (h = g2 // 3)
    and an effect of h in y: the partial sampler integrates h out with g1 and keeps g2."""
    data = three_factor_data()
    data["h"] = data.g2 // 3
    data["y"] = data.y + np.array([0.6, -0.4, 0.1])[data.h]
    return data
