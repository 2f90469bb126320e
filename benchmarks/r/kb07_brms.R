# brms on the kb07-shaped data, default priors, 4 x 1000 (tune 1000), 2 cores: wall time
# (compile and sampling apart), min bulk ESS over all parameters, divergences, max R-hat.
#   Rscript benchmarks/r/kb07_brms.R tests/golden/data/kb07.csv
# Debian: r-cran-brms; its r-cran-bh has no include/ (boost is in /usr/include), so rstan
# says "Boost not found" until: ln -s /usr/include /usr/lib/R/site-library/BH/include
suppressMessages({library(brms); library(posterior)})
args <- commandArgs(TRUE)
d <- read.csv(args[1])
f <- rt ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)
t0 <- proc.time()[["elapsed"]]
m <- brm(f, d, chains = 0, silent = 2, refresh = 0)
t1 <- proc.time()[["elapsed"]]
fit <- update(m, recompile = FALSE, chains = 4, cores = 2, iter = 2000, warmup = 1000,
              seed = 1, silent = 2, refresh = 0)
t2 <- proc.time()[["elapsed"]]
draws <- as_draws_array(fit)
s <- summarise_draws(draws, "ess_bulk", "rhat")
np <- nuts_params(fit)
cat(jsonlite::toJSON(list(compile = t1 - t0, sample = t2 - t1,
  min_ess = min(s$ess_bulk, na.rm = TRUE), max_rhat = max(s$rhat, na.rm = TRUE),
  divergences = sum(np$Value[np$Parameter == "divergent__"]),
  brms = as.character(packageVersion("brms"))), auto_unbox = TRUE))
