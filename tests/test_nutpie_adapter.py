"""Contract test of bayes/nutpie_adapter.py, the one file that touches nutpie's internals.

The field lists below are nutpie's ``compile_pymc.CompiledPyMCModel`` as released: 0.16.8
(installed here) and 0.16.9-0.16.11 (read from nutpie's source: ``shared_var_keys``
became a required field, ``reparameterized_names`` a keyword-only optional one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from bayeslmm.bayes import nutpie_adapter

FIELDS_0_16_8 = ["dims", "compiled_logp_func", "compiled_expand_func", "initial_point_func",
                 "shared_data", "user_data", "n_expanded", "shape_info", "logp_func",
                 "expand_func", "_n_dim", "_shapes", "_coords", "_transform_adapt_args"]


@dataclass(frozen=True)
class Model_0_16_11:  # noqa: N801 - the release it mirrors
    compiled_logp_func: Any
    compiled_expand_func: Any
    initial_point_func: Any
    shared_data: dict
    shared_var_keys: dict
    user_data: Any
    n_expanded: int
    shape_info: Any
    logp_func: Any
    expand_func: Any
    dims: dict | None
    reparameterized_names: list | None = field(default=None, kw_only=True)
    _n_dim: int
    _shapes: dict
    _coords: dict | None


def _values():
    return nutpie_adapter.cfunc_field_values("logp", "expand", np.zeros(3), 4, lambda s: s)


def test_installed_nutpie_fields_are_all_known_or_optional():
    from nutpie.compile_pymc import CompiledPyMCModel

    names = [f.name for f in dataclasses.fields(CompiledPyMCModel)]
    assert sorted(names) == sorted(FIELDS_0_16_8), "nutpie changed: recheck the adapter"
    for f in dataclasses.fields(CompiledPyMCModel):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert f.name in nutpie_adapter.KNOWN_FIELDS or not required


def test_newer_field_list_is_filled():
    model = nutpie_adapter.fill_fields(Model_0_16_11, _values())
    assert model.shared_var_keys == {} and model.shared_data == {}
    assert model._n_dim == 4 and model.shape_info[1] == [slice(0, 4)]
    assert model.reparameterized_names is None


def test_unknown_required_field_is_named():
    @dataclass
    class Future:
        compiled_logp_func: Any
        brand_new_required: int

    with pytest.raises(RuntimeError, match="brand_new_required"):
        nutpie_adapter.fill_fields(Future, _values())


def test_low_rank_spelling_follows_the_signature():
    def old(compiled, *, low_rank_modified_mass_matrix=False): ...

    def new(compiled, *, adaptation="diag", low_rank_modified_mass_matrix=None): ...

    assert nutpie_adapter.low_rank_kwargs(old) == {"low_rank_modified_mass_matrix": True}
    assert nutpie_adapter.low_rank_kwargs(new) == {"adaptation": "low_rank"}


def test_installed_nutpie_builds_and_samples_a_cfunc_model():
    """The real dataclass, through the adapter, runs (the sleepstudy marginal sampler)."""
    import bayeslmm
    from bayeslmm.datasets import load

    fit = bayeslmm.fit("Reaction ~ Days + (Days | Subject)", load("sleepstudy"), draws=50,
                       tune=50, chains=1, cores=1, random_seed=1, progressbar=False)
    assert fit.sampler == "marginal"
    assert np.isfinite(fit.posterior["sigma"].to_numpy()).all()
