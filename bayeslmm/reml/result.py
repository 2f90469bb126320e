"""``RemlFit``: the estimates of a REML/ML fit, laid out the way lme4 users read them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..spec import ModelSpec

__all__ = ["RemlFit", "SummaryText"]

SUMMARY_SATTERTHWAITE_MAX = 12  # summary()'s "auto": Satterthwaite up to this many parameters


class SummaryText(str):
    """A string that shows itself as-is in a notebook cell or the REPL."""

    def __repr__(self) -> str:
        return str(self)


@dataclass
class RemlFit:
    """Result of :func:`bayeslmm.fit` with ``method="reml"`` or ``"ml"``.

    Covariance blocks are reported in the engine's order (grouping factors by number of
    levels, most first), as lme4 reports them.  Names follow formulae
    (``Intercept``, ``Sex[Female]``) rather than R (``(Intercept)``, ``SexFemale``).
    """

    spec: ModelSpec
    method: str
    block_order: list[int]
    theta: np.ndarray
    lambdas: list[np.ndarray]
    beta: np.ndarray
    vcov_beta: np.ndarray
    sigma: float
    effects: list[np.ndarray]
    criterion: float
    deviance_ml: float
    converged: bool
    optimizer_message: str
    n_evals: int
    is_singular: bool
    elapsed: float
    residual_model: object | None = None     # residual.ResidualModel (R-side structure)
    residual_params: np.ndarray | None = None
    deviance_object: object | None = field(default=None, repr=False)  # Deviance it came from
    refitter: object | None = field(default=None, repr=False)  # reml -> RemlFit of the spec

    # -- fixed effects -------------------------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates, named by X's columns."""
        return pd.Series(self.beta, index=self.spec.x_names, name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effect estimates."""
        names = self.spec.x_names
        return pd.DataFrame(self.vcov_beta, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov_beta)), index=self.spec.x_names, name="se")

    @property
    def tvalues(self) -> pd.Series:
        """t values (estimate / standard error)."""
        return (self.fixef / self.se).rename("t")

    def refit(self, reml: bool) -> RemlFit:
        """The same model (spec, residual structure) fitted by REML (True) or ML (False):
        what likelihood-ratio tests and profiles of REML fits need; never re-reads the
        formula."""
        if (self.method == "REML") == bool(reml):
            return self
        if self.refitter is None:
            raise ValueError("this fit cannot be refitted (it was not made by fit_reml or "
                             "fit_structured)")
        return self.refitter(bool(reml))

    # -- tests of fixed effects (bayeslmm/inference) -------------------------------------
    def coef_table(self, ddf: str | None = "satterthwaite") -> pd.DataFrame:
        """``estimate, se, df, t, p`` per fixed effect, indexed by X's column names.

        ``ddf``: ``"satterthwaite"`` (lmerTest's default), ``"kenward-roger"`` (pbkrtest's;
        ``se`` adjusted too), ``"residual"`` (n - p) or None (z tests)."""
        from ..inference import coef_table

        return coef_table(self, ddf)

    def anova(self, ddf: str | None = "satterthwaite") -> pd.DataFrame:
        """Type III F tests by formula term: ``num_df, den_df, F, p`` (lmerTest's anova)."""
        from ..inference import anova_table

        return anova_table(self, ddf)

    def test(self, hypothesis, rhs=None, ddf: str | None = "satterthwaite") -> pd.Series:
        """Test a linear hypothesis: ``fit.test("Days = 0")``, ``fit.test("a = b, c = 0")``
        or a contrast matrix L (rows: hypotheses, columns: fixed effects) with ``rhs``."""
        from ..inference import linear_test

        return linear_test(self, hypothesis, rhs, ddf)

    def confint(self, method: str = "profile", level: float = 0.95, n_boot: int = 1000,
                random_seed: int | None = None) -> pd.DataFrame:
        """Confidence intervals (columns ``lower, upper``) of every fixed effect, SD,
        correlation and sigma, named as ``compare_reml()``: ``method="profile"`` (lme4's
        likelihood-ratio intervals), ``"wald"`` (fixed effects; NaN for variances, as lme4)
        or ``"boot"`` (percentiles of ``bootstrap(n_boot)``)."""
        from ..inference.intervals import confint

        return confint(self, method, level, n_boot=n_boot, random_seed=random_seed)

    def bootstrap(self, n: int = 1000, random_seed: int | None = None,
                  progressbar: bool = True, cores: int | None = None) -> pd.DataFrame:
        """``n`` parametric-bootstrap replicates of every parameter (a DataFrame, one row per
        replicate; MixedModels.jl's ``parametricbootstrap``), reproducible with a seed;
        ``cores`` threads refit (default: all; the replicates do not depend on it)."""
        from ..inference.bootstrap import bootstrap

        return bootstrap(self, n=n, random_seed=random_seed, progressbar=progressbar,
                         cores=cores)

    # -- covariance parameters -----------------------------------------------------------
    @property
    def blocks(self):
        return [self.spec.blocks[k] for k in self.block_order]

    def covariances(self) -> list[np.ndarray]:
        """G_k = sigma^2 lambda_k lambda_k' per block (engine order)."""
        return [self.sigma**2 * lam @ lam.T for lam in self.lambdas]

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components like lme4's ``as.data.frame(VarCorr(fit))``.

        Columns ``group, var1, var2, vcov, sdcor``: one row per standard deviation (var2
        missing, vcov the variance), one per correlation (vcov the covariance, sdcor the
        correlation), and a last ``Residual`` row.
        """
        rows = []
        for block, cov in zip(self.blocks, self.covariances(), strict=True):
            sd = np.sqrt(np.diag(cov))
            for a, term in enumerate(block.terms):
                rows.append((block.factor, term, None, cov[a, a], sd[a]))
            for a in range(block.q):
                for b in range(a + 1, block.q):
                    denom = sd[a] * sd[b]
                    corr = cov[a, b] / denom if denom > 0 else np.nan
                    rows.append((block.factor, block.terms[a], block.terms[b], cov[a, b], corr))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    @property
    def theta_named(self) -> pd.Series:
        """theta with lme4-style names (``Subject.Intercept``, ``Subject.Days.Intercept``;
        a cs or ar1 block's correlation parameter ``Subject.cs_rho`` / ``Subject.ar1_phi``)."""
        from ..core.covariance import structure_for

        names = [n for block in self.blocks for n in structure_for(block).names(block.factor)]
        return pd.Series(self.theta, index=names, name="theta")

    # -- random effects ------------------------------------------------------------------
    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes (BLUPs) per grouping factor: a DataFrame indexed by level,
        one column per term (blocks on the same factor side by side)."""
        out: dict[str, pd.DataFrame] = {}
        for block, b in zip(self.blocks, self.effects, strict=True):
            frame = pd.DataFrame(b, index=pd.Index(block.levels, name=block.factor),
                                 columns=block.terms)
            if block.factor in out:  # another block on the same factor: side by side
                left = out[block.factor]
                frame.columns = [f"{c}.1" if c in left.columns else c for c in frame.columns]
                out[block.factor] = pd.concat([left, frame], axis=1)
            else:
                out[block.factor] = frame
        return out

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels per grouping factor."""
        return {block.factor: block.n_levels for block in self.blocks}

    # -- fit statistics ------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.spec.n

    @property
    def reml_criterion(self) -> float | None:
        """lme4's ``REMLcrit`` (None for an ML fit)."""
        return self.criterion if self.method == "REML" else None

    @property
    def deviance(self) -> float:
        """-2 log likelihood with the 2 pi constant; for a REML fit, the ML deviance at
        the REML estimates (lme4's ``deviance(fit, REML = FALSE)``)."""
        return self.deviance_ml

    @property
    def loglik(self) -> float:
        """Log likelihood (REML log likelihood for REML fits, as lme4's ``logLik``)."""
        return -0.5 * self.criterion

    @property
    def n_params(self) -> int:
        """Fixed effects, theta, sigma and the residual structure's parameters."""
        extra = 0 if self.residual_params is None else self.residual_params.size
        return self.spec.p + self.theta.size + 1 + extra

    # -- the residual structure ----------------------------------------------------------
    @property
    def residual_structure(self) -> pd.DataFrame:
        """Residual parameters in the data's units, indexed by name (``sigma``, ``phi``,
        ``rho``, ``sd[visit]``, ``cor[a, b]``, ``sd_ratio[level]``), column ``estimate``."""
        if self.residual_model is None:
            return pd.DataFrame({"estimate": [self.sigma]},
                                index=pd.Index(["sigma"], name="parameter"))
        return self.residual_model.report(self.residual_params, self.sigma)

    def residual_cov(self) -> pd.DataFrame:
        """Occasion x occasion covariance of the residuals (sigma^2 included), labelled by
        occasion; with ``sigma="~ f"`` at the first level of f (ratio 1)."""
        if self.residual_model is None:
            return pd.DataFrame([[self.sigma**2]], index=["(all)"], columns=["(all)"])
        return self.residual_model.covariance(self.residual_params, self.sigma)

    def resid(self, type: str = "raw") -> pd.Series:  # noqa: A002 - nlme's argument name
        """Residuals as nlme's ``resid(fit, type=)``: ``"raw"`` (response minus conditional
        fitted values), ``"pearson"`` (raw / their modelled SD) or ``"normalized"``
        (whitened by the estimated residual correlation: iid N(0, 1) under the model)."""
        raw = self.spec.response_values - self._fitted_array()
        if type == "raw":
            values = raw
        elif type in ("pearson", "normalized"):
            model = self.residual_model
            if model is None:
                values = raw / self.sigma
            elif type == "normalized":
                values = model.normalized(raw, self.residual_params, self.sigma)
            else:
                values = raw / (self.sigma * model.row_sds(self.residual_params))
        else:
            raise ValueError(f"type must be 'raw', 'pearson' or 'normalized', got {type!r}")
        return pd.Series(values, index=self.spec.row_index, name=f"{type} residual")

    @property
    def normalized_residuals(self) -> pd.Series:
        """``resid(type="normalized")``."""
        return self.resid("normalized")

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.n_params

    # -- fitted values -------------------------------------------------------------------
    def _fitted_array(self) -> np.ndarray:
        value = self.spec.X @ self.beta + self.spec.offset_values
        for block, b in zip(self.blocks, self.effects, strict=True):
            value = value + block.z_times(b)
        return value

    @property
    def fitted(self) -> pd.Series:
        """Conditional fitted values X beta + Z b, indexed like the rows used."""
        return pd.Series(self._fitted_array(), index=self.spec.row_index, name="fitted")

    @property
    def residuals(self) -> pd.Series:
        """Response minus conditional fitted values."""
        return pd.Series(self.spec.response_values - self._fitted_array(),
                         index=self.spec.row_index,
                         name="residual")

    def predict(self, newdata: pd.DataFrame | None = None, include_random: bool = True,
                new_levels: str = "zero") -> pd.Series:
        """Predictions X beta + Z b for new rows (lme4's ``predict(fit, newdata)``).

        Parameters
        ----------
        newdata : DataFrame, optional
            Columns used by the formula (the response is not needed); default: the fitted
            rows (``fitted``).
        include_random : bool
            Include the conditional modes (False: population level, lme4's ``re.form = NA``).
        new_levels : {"zero", "error"}
            Levels not seen in fitting: their effects are 0 (lme4's ``allow.new.levels``)
            or raise.  The residual structure does not enter (as nlme's ``predict``).
        """
        from ..newdata import new_data_design, new_data_offset

        if new_levels not in ("zero", "error"):
            raise ValueError(f"new_levels must be 'zero' or 'error', got {new_levels!r}")
        if newdata is None:
            return self.fitted if include_random else pd.Series(
                self.spec.X @ self.beta + self.spec.offset_values, index=self.spec.row_index,
                name="fitted")
        X, groups = new_data_design(self.spec, newdata, include_random)
        value = X @ self.beta + new_data_offset(self.spec, newdata)
        used: dict[str, int] = {}
        for k, block in enumerate(self.spec.blocks if include_random else []):
            codes, columns, labels = groups[block.factor]
            at = used.get(block.factor, 0)
            used[block.factor] = at + block.q
            known = codes >= 0
            if not known.all() and new_levels == "error":
                unseen = sorted(map(str, set(labels[~known])))[:5]
                raise ValueError(f"newdata has levels of {block.factor!r} not seen in fitting: "
                                 f"{unseen}; use new_levels='zero'")
            effects = self.effects[self.block_order.index(k)]
            cols = columns[:, at: at + block.q]
            value[known] += np.einsum("nq,nq->n", effects[codes[known]], cols[known])
        return pd.Series(value, index=newdata.index, name="predicted")

    # -- printing ------------------------------------------------------------------------
    def _variance_size(self) -> int:
        return self.theta.size + 1 + (0 if self.residual_params is None
                                      else self.residual_params.size)

    def summary(self, ddf: str | None = "auto") -> SummaryText:
        """A table like lme4's ``summary()``, with lmerTest's df and p-values (``ddf``:
        "satterthwaite", "kenward-roger", "residual", None for z tests, or "auto":
        Satterthwaite up to ``SUMMARY_SATTERTHWAITE_MAX`` variance parameters - its numerical
        Hessian costs ~8 k^2 criterion evaluations - else z tests, said in the table)."""
        note = ""
        if ddf == "auto":
            ddf = "satterthwaite"
            if self._variance_size() > SUMMARY_SATTERTHWAITE_MAX:
                ddf = None
                note = (f"(z tests: Satterthwaite df for {self._variance_size()} variance "
                        "parameters take a while - call summary(ddf='satterthwaite'))")
        kind = ("Linear mixed model" if self.spec.blocks else
                "Generalized least squares" if self.residual_model is not None
                and self.residual_model.size else "Linear model")
        lines = [
            f"{kind} fit by {self.method} (bayeslmm)",
            f"Formula: {self.spec.formula}",
        ]
        if self.residual_model is not None:
            lines.append(f"Residual structure: {self.residual_model.term.text()}")
        lines.append("")
        if self.method == "REML":
            lines.append(f"REML criterion at convergence: {self.criterion:.1f}")
        else:
            lines.append(
                f"     AIC      BIC   logLik deviance\n"
                f"{self.aic:8.1f} {self.bic:8.1f} {self.loglik:8.1f} {self.deviance:8.1f}"
            )
        scaled = self.resid("pearson").to_numpy()
        qs = np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1])
        lines += ["", "Scaled residuals:",
                  "     Min       1Q   Median       3Q      Max",
                  " ".join(f"{v:8.4f}" for v in qs), "", "Random effects:"]
        lines.append(_random_table(self))
        if self.residual_model is not None and self.residual_model.size:
            lines += ["", "Residual structure:",
                      self.residual_structure.to_string(float_format=lambda v: f"{v:.4g}")]
        groups = ", ".join(f"{k}, {v}" for k, v in self.ngroups.items())
        lines.append(f"Number of obs: {self.nobs}" + (f", groups:  {groups}" if groups else ""))
        if self.spec.n_dropped:
            lines.append(f"({self.spec.n_dropped} rows dropped for missing values)")
        lines += ["", "Fixed effects:"]
        table = self._coef_display(ddf)
        lines.append(table.to_string(float_format=lambda v: f"{v:.4g}"))
        if note:
            lines.append(note)
        if self.spec.p > 1:
            se = self.se.to_numpy()
            corr = self.vcov_beta / np.outer(se, se)
            short = [n[:6] for n in self.spec.x_names]
            cf = pd.DataFrame(corr, index=self.spec.x_names, columns=short)
            text = cf.to_string(float_format=lambda v: f"{v:.3f}").splitlines()
            lines += ["", "Correlation of Fixed Effects:"] + text
        if self.is_singular:
            lines += ["", "boundary (singular) fit: see help('isSingular')"]
        if not self.converged:
            lines += ["", f"optimizer did not converge: {self.optimizer_message}"]
        return SummaryText("\n".join(lines))

    def _coef_display(self, ddf) -> pd.DataFrame:
        try:
            ct = self.coef_table(ddf)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):  # a degenerate fit
            ct = None
        table = pd.DataFrame({"Estimate": self.fixef, "Std. Error": self.se})
        if ct is not None:
            table["Std. Error"] = ct["se"]
        if ct is None:
            table["t value"] = self.tvalues
            return table
        table["df"] = ct["df"]
        table["t value"] = ct["t"]
        table["Pr(>|t|)"] = ct["p"]
        return table

    def _header(self) -> str:
        dropped = f" ({self.spec.n_dropped} dropped for missing values)" \
            if self.spec.n_dropped else ""
        groups = ", ".join(f"{k} {v}" for k, v in self.ngroups.items()) or "no random effects"
        status = "converged" if self.converged else f"NOT converged ({self.optimizer_message})"
        singular = ", boundary (singular) fit" if self.is_singular else ""
        crit = "REML criterion" if self.method == "REML" else "deviance"
        structure = (f"; residual {self.residual_model.term.text()}"
                     if self.residual_model is not None else "")
        return (f"RemlFit {self.method}: {self.spec.formula}{structure}\n"
                f"  rows {self.nobs}{dropped}; levels: {groups}\n"
                f"  {crit} {self.criterion:.2f}, logLik {self.loglik:.2f}, AIC {self.aic:.1f}, "
                f"BIC {self.bic:.1f}; {status} in {self.n_evals} evaluations{singular}")

    def _fixed_table(self) -> pd.DataFrame:
        """Estimates, SEs and t; with Satterthwaite df and p where that is cheap (up to 8
        variance parameters and 20,000 rows: the Hessian costs ~100 criterion evaluations)."""
        table = pd.DataFrame({"estimate": self.fixef, "se": self.se, "t": self.tvalues})
        if self._variance_size() <= 8 and self.nobs <= 20_000:
            try:
                ct = self.coef_table("satterthwaite")
                table["df"], table["p"] = ct["df"], ct["p"]
            except (np.linalg.LinAlgError, ValueError, FloatingPointError):
                pass
        return table

    def __repr__(self) -> str:
        vc = self.varcorr.fillna("")
        text = (f"{self._header()}\n\nFixed effects:\n{self._fixed_table().to_string()}"
                f"\n\nVariance components:\n{vc.to_string(index=False)}")
        if self.residual_model is not None and self.residual_model.size:
            text += f"\n\nResidual structure:\n{self.residual_structure.to_string()}"
        return text

    def _repr_html_(self) -> str:
        head = "<br>".join(self._header().splitlines())
        return (f"<p>{head}</p><b>Fixed effects</b>{self._fixed_table().to_html()}"
                f"<b>Variance components</b>{self.varcorr.to_html(index=False, na_rep='')}")


def _random_table(fit: RemlFit) -> str:
    rows = []
    for block, cov in zip(fit.blocks, fit.covariances(), strict=True):
        sd = np.sqrt(np.diag(cov))
        for a, term in enumerate(block.terms):
            corr = ""
            if a > 0 and block.q > 1:
                corr = " ".join(
                    f"{cov[a, b] / (sd[a] * sd[b]):5.2f}" if sd[a] * sd[b] > 0 else "  NaN"
                    for b in range(a)
                )
            rows.append((block.factor if a == 0 else "", term, f"{cov[a, a]:.4g}",
                         f"{sd[a]:.4g}", corr))
    rows.append(("Residual", "", f"{fit.sigma**2:.4g}", f"{fit.sigma:.4g}", ""))
    frame = pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])
    return frame.to_string(index=False)
