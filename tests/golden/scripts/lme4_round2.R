# Golden values for tests/golden/lme4_round2.json (run once by a developer; tests never need R).
#   python tests/golden/scripts/make_sim_data.py
#   Rscript tests/golden/scripts/lme4_round2.R <shared-data-dir> tests/golden/data > tests/golden/lme4_round2.json
# lme4 1.1-31 from Debian.  "default": lmer's default optimizer settings (what users get);
# "tight": nloptwrap with xtol_rel=1e-12, ftol_rel=1e-14 (the optimum to compare against).
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE); shared <- args[1]; sim <- args[2]
tight <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_rel = 1e-12, ftol_rel = 1e-14,
                     xtol_abs = 1e-12, ftol_abs = 1e-14, maxeval = 1e5),
                     check.conv.singular = "ignore", calc.derivs = FALSE)
quiet <- lmerControl(check.conv.singular = "ignore", calc.derivs = FALSE)
describe <- function(f, seconds = NA) {
  vc <- as.data.frame(VarCorr(f))
  list(fixef = as.list(fixef(f)), se = as.list(sqrt(diag(as.matrix(vcov(f))))),
       sigma = sigma(f), theta = unname(getME(f, "theta")), varcorr = vc,
       criterion = if (isREML(f)) REMLcrit(f) else deviance(f), logLik = as.numeric(logLik(f)),
       nobs = nobs(f), seconds = seconds)
}
timed <- function(formula, data, reml, control) {
  t <- system.time(f <- suppressWarnings(lmer(formula, data, REML = reml, control = control)))
  describe(f, unname(t["elapsed"]))
}
out <- list()
ie <- read.csv(file.path(shared, "insteval.csv"),
               colClasses = c(s = "factor", d = "factor", studage = "factor",
                              lectage = "factor", service = "factor", dept = "factor"))
models <- list(
  insteval_dept_slope = list(ie, y ~ 1 + service + (1 | s) + (1 | d) + (1 + service | dept),
                             "y ~ 1 + service + (1 | s) + (1 | d) + (1 + service | dept)"),
  insteval_d_slope = list(ie, y ~ 1 + service + (1 | s) + (service | d),
                          "y ~ 1 + service + (1 | s) + (service | d)"))
vc2 <- read.csv(file.path(sim, "vcomp2.csv"))
models$vcomp2 <- list(vc2, y ~ x1 + x2 + (0 + z1 + z2 | groups) + (1 | v1) + (1 | v2),
                      "y ~ x1 + x2 + (0 + z1 + z2 | groups) + (1 | v1) + (1 | v2)")
kb <- read.csv(file.path(sim, "kb07.csv"))
models$kb07 <- list(kb, rt ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) +
                          (1 + spkr + prec + load | item),
                    "rt ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)")
for (nm in names(models)) for (reml in c(TRUE, FALSE)) {
  m <- models[[nm]]
  key <- paste0(nm, if (reml) "_reml" else "_ml")
  d <- timed(m[[2]], m[[1]], reml, tight)
  d$default <- timed(m[[2]], m[[1]], reml, quiet)[c("criterion", "theta", "seconds")]
  d$formula <- m[[3]]
  out$models[[key]] <- d
}
ss <- read.csv(file.path(sim, "small_slopes.csv"))
small <- list()
for (k in sort(unique(ss$dataset))) for (reml in c(TRUE, FALSE)) {
  d <- ss[ss$dataset == k, ]
  ft <- suppressWarnings(lmer(y ~ x + (x | g), d, REML = reml, control = tight))
  fd <- suppressWarnings(lmer(y ~ x + (x | g), d, REML = reml, control = quiet))
  small[[length(small) + 1]] <- list(dataset = k, reml = reml,
    tight = if (reml) REMLcrit(ft) else deviance(ft), default = if (reml) REMLcrit(fd) else deviance(fd),
    theta = unname(getME(ft, "theta")))
}
out$small_slopes <- small
out$software <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
cat(toJSON(out, digits = I(15), auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE))
