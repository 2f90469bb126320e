# Peers of benchmarks/mmrm.py: glmmTMB and nlme's gls on the same CSV (REML), one JSON line.
suppressMessages({library(glmmTMB); library(nlme); library(jsonlite)})
args <- commandArgs(TRUE); d <- read.csv(args[1], stringsAsFactors = TRUE)
d$visit <- factor(d$visit, levels = sort(unique(as.character(d$visit))))
out <- list()
t <- system.time(f <- glmmTMB(y ~ race + sex + base + arm * visit + us(visit + 0 | id),
                              data = d, dispformula = ~ 0, REML = TRUE))
out$glmmtmb <- list(wall = unname(t["elapsed"]), loglik = as.numeric(logLik(f)))
if (args[2] == "1") {
  t <- system.time(g <- gls(y ~ race + sex + base + arm * visit, d, method = "REML",
                            correlation = corSymm(form = ~ vnum | id),
                            weights = varIdent(form = ~ 1 | visit)))
  out$gls <- list(wall = unname(t["elapsed"]), loglik = as.numeric(logLik(g)))
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
