"""Type III contrasts as lmerTest 3.1 builds them (``get_contrasts_type3``).

With X the model's (treatment-coded) fixed-effect matrix and rdX the "complete" design -
every factor coded by all its levels, every term the row-wise product of its variables -
the basic contrasts are L = (X^+ rdX)' (rows: rdX's columns, columns: X's).  Terms contained
in others (``age`` in ``age:Sex``) have their columns of L orthogonalized, highest order
first, against the columns of the terms that contain them; L's rows of X's own columns then
give each term's contrast matrix (its columns of L, transposed).  With numeric covariates in
interactions this differs from "the term's coefficients are 0".
"""

from __future__ import annotations

import numpy as np

__all__ = ["type3_contrasts"]


def _full_dummies(component) -> np.ndarray:
    """One column per level of a categorical component (formulae coding undone)."""
    value = np.asarray(component.value, dtype=float)
    coding = np.asarray(component.contrast_matrix.matrix, dtype=float)   # levels x coded
    distance = ((value[:, None, :] - coding[None, :, :]) ** 2).sum(axis=2)
    level = distance.argmin(axis=1)
    return np.eye(coding.shape[0])[level]


def _term_block(term, n: int) -> np.ndarray:
    block = np.ones((n, 1))
    for component in term.components:
        if getattr(component, "kind", "numeric") == "categoric":
            part = _full_dummies(component)
        else:
            part = np.asarray(component.value, dtype=float).reshape(n, -1)
        block = (block[:, :, None] * part[:, None, :]).reshape(n, -1)
    return block


def _variables(term) -> frozenset[str]:
    return frozenset(getattr(c, "name", str(c)) for c in getattr(term, "components", []))


def type3_contrasts(spec) -> dict[str, np.ndarray]:
    """term -> its type III contrast matrix (rows: hypotheses, columns: X's columns)."""
    design = spec.fixed_design
    terms = dict(design.terms)
    names = spec.x_names
    n = spec.n
    blocks, rd_of, cols_of = [], {}, {}
    at = 0
    for name, term in terms.items():
        block = np.ones((n, 1)) if name == "Intercept" else _term_block(term, n)
        blocks.append(block)
        rd_of[name] = list(range(at, at + block.shape[1]))
        at += block.shape[1]
        cols_of[name] = [names.index(lab) for lab in getattr(term, "labels", [name])
                         if lab in names]
    rdx = np.column_stack(blocks)
    L = np.linalg.pinv(spec.X) @ rdx        # p x r: column k = contrast of rdX column k
    L = L.T                                 # r x p (lmerTest's orientation)
    L[np.abs(L) < 1e-10 * max(np.abs(L).max(), 1.0)] = 0.0
    order = {name: len(_variables(t)) for name, t in terms.items() if name != "Intercept"}
    for name in sorted(order, key=lambda k: -order[k]):
        mine = _variables(terms[name])
        containing = [other for other in order if other != name
                      and mine < _variables(terms[other])]
        if not containing or not cols_of[name]:
            continue
        basis = L[:, [c for other in containing for c in cols_of[other]]]
        target = L[:, cols_of[name]]
        coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
        resid = target - basis @ coef
        resid[np.abs(resid) < 1e-10 * max(np.abs(target).max(), 1.0)] = 0.0
        L[:, cols_of[name]] = resid
    # rows of rdX that are X's own columns: match by column equality
    rows = []
    for j in range(spec.p):
        match = np.flatnonzero(np.all(np.isclose(rdx, spec.X[:, [j]], atol=1e-12), axis=0))
        rows.append(match[0] if match.size else None)
    if any(r is None for r in rows):
        raise ValueError("type III contrasts: X has a column that is not a column of the "
                         "complete design (a non-treatment coding); use the term test")
    Lp = L[rows, :]                          # p x p
    return {name: Lp[:, cols_of[name]].T for name in order if cols_of[name]}
