# Golden values for tests/golden/bootstrap_lme4.json (run once by a developer; tests never
# need R):
#   Rscript tests/golden/scripts/bootstrap_lme4.R bayeslmm/datasets/data \
#       > tests/golden/bootstrap_lme4.json
# lme4 1.1-31 bootMer: the parametric-bootstrap distribution (simulate from the REML fit,
# refit with REML) of sleepstudy's Reaction ~ Days + (Days | Subject) - means, SDs and
# quantiles of every parameter over 4,000 replicates, named as bayeslmm's compare_reml().
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE); shipped <- args[1]
sleep <- read.csv(file.path(shipped, "sleepstudy.csv"), stringsAsFactors = TRUE)
sleep$Subject <- factor(sleep$Subject)
g <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE)
stat <- function(x) {
  vc <- as.data.frame(VarCorr(x))
  c(fixef(x), vc$sdcor[1], vc$sdcor[2], vc$sdcor[3], sigma(x))
}
n <- 4000L
b <- suppressMessages(bootMer(g, stat, nsim = n, seed = 20261202))
draws <- b$t
colnames(draws) <- c("b[Intercept]", "b[Days]", "sd_Subject[Intercept]", "sd_Subject[Days]",
                     "cor_Subject[Intercept, Days]", "sigma")
probs <- c(0.025, 0.25, 0.5, 0.75, 0.975)
out <- list(n = n, probs = probs, names = colnames(draws),
            mean = unname(colMeans(draws, na.rm = TRUE)),
            sd = unname(apply(draws, 2, sd, na.rm = TRUE)),
            n_nan = unname(colSums(is.na(draws))),
            quantiles = unname(lapply(seq_len(ncol(draws)),
                                      function(j) unname(quantile(draws[, j], probs, na.rm = TRUE)))),
            estimate = unname(stat(g)),
            lme4 = as.character(packageVersion("lme4")))
cat(toJSON(out, digits = NA, auto_unbox = TRUE))
