# Golden values for tests/golden/gpatterns_glmmtmb.json (run once by a developer; tests never
# need R):
#   Rscript tests/golden/scripts/gpatterns_glmmtmb.R tests/golden/data > tests/golden/gpatterns_glmmtmb.json
# glmmTMB 1.1.5 (Debian r-cran-glmmtmb): covariance patterns of G - diag(), cs() (an SD per term,
# one correlation) and ar1() (one SD, phi^|a - b| over the terms' order) - REML and ML, on
# simulated data this script writes to the given directory (gpatterns.csv).
suppressMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(TRUE); out_dir <- args[1]
set.seed(20261202)
n_g <- 60; n_t <- 4; reps <- 2
d <- expand.grid(rep = seq_len(reps), t = seq_len(n_t), g = seq_len(n_g))
d$g <- factor(sprintf("G%02d", d$g))
d$ft <- factor(paste0("T", d$t))
d$x1 <- rnorm(nrow(d)); d$x2 <- rnorm(nrow(d))
# G-side cs on (1, x1, x2): SDs 1.0, 0.6, 0.4 and correlation 0.4
sd <- c(1.0, 0.6, 0.4); corr <- matrix(0.4, 3, 3); diag(corr) <- 1
b <- matrix(rnorm(3 * n_g), n_g) %*% chol(diag(sd) %*% corr %*% diag(sd))
# G-side ar1 over the four times: SD 0.8, phi 0.6
a <- matrix(rnorm(n_t * n_g), n_g) %*% chol(0.8^2 * 0.6^abs(outer(1:n_t, 1:n_t, "-")))
gi <- as.integer(d$g)
d$y <- 5 + 0.5 * d$x1 - 0.3 * d$x2 + b[cbind(gi, 1)] + b[cbind(gi, 2)] * d$x1 +
  b[cbind(gi, 3)] * d$x2 + a[cbind(gi, d$t)] + rnorm(nrow(d), sd = 0.5)
write.csv(d[, c("g", "t", "ft", "rep", "x1", "x2", "y")], file.path(out_dir, "gpatterns.csv"),
          row.names = FALSE)
describe <- function(f) {
  ll <- logLik(f)
  vc <- VarCorr(f)$cond
  list(logLik = as.numeric(ll), df = attr(ll, "df"), fixef = as.list(fixef(f)$cond),
       sigma = sigma(f), covs = lapply(vc, function(m) {m <- unclass(m); attributes(m) <-
       list(dim = dim(m)); m}), converged = f$fit$convergence == 0 && f$sdr$pdHess)
}
ctl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4))
models <- list(
  cs = y ~ x1 + x2 + cs(1 + x1 + x2 | g),
  diag = y ~ x1 + x2 + diag(1 + x1 + x2 | g),
  us = y ~ x1 + x2 + us(1 + x1 + x2 | g),
  ar1 = y ~ x1 + x2 + ar1(0 + ft | g),
  cs_ar1 = y ~ x1 + x2 + cs(1 + x1 + x2 | g) + ar1(0 + ft | g)
)
out <- list()
for (name in names(models)) for (reml in c(TRUE, FALSE)) {
  f <- glmmTMB(models[[name]], d, REML = reml, control = ctl)
  out[[paste0(name, if (reml) "_reml" else "_ml")]] <- describe(f)
}
out$meta <- list(glmmTMB = as.character(packageVersion("glmmTMB")))
cat(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", pretty = TRUE))
