# Golden value for tests/golden/evidence_bridgesampling.json (run once by a developer; tests
# never need R): the log marginal likelihood of sleepstudy's (Days | Subject) model under fixed
# priors, from brms 2.18 + bridgesampling 1.1 (Debian), 4 chains x 10,000 post-warmup draws.
#   Rscript tests/golden/scripts/evidence_bridgesampling.R bayeslmm/datasets/data \
#       > tests/golden/evidence_bridgesampling.json
# The priors are bayeslmm's parametrization: Intercept on centered predictors (brms's class
# Intercept is too), half-t SDs and sigma (brms truncates student_t at 0 for classes sd and
# sigma), LKJ(1).
suppressMessages({library(brms); library(bridgesampling); library(jsonlite)})
args <- commandArgs(TRUE)
sleep <- read.csv(file.path(args[1], "sleepstudy.csv")); sleep$Subject <- factor(sleep$Subject)
priors <- c(prior(normal(250, 50), class = Intercept), prior(normal(0, 20), class = b),
            prior(student_t(3, 0, 30), class = sd), prior(student_t(3, 0, 30), class = sigma),
            prior(lkj(1), class = cor))
t0 <- proc.time()[["elapsed"]]
fit <- brm(Reaction ~ Days + (Days | Subject), sleep, prior = priors, chains = 4, cores = 2,
           iter = 12500, warmup = 2500, seed = 1, refresh = 0, save_pars = save_pars(all = TRUE),
           silent = 2)
t1 <- proc.time()[["elapsed"]]
bs <- bridge_sampler(fit, silent = TRUE, repetitions = 5)
t2 <- proc.time()[["elapsed"]]
cat(toJSON(list(logml = bs$logml, logml_median = median(bs$logml), logml_sd = sd(bs$logml),
                brms_seconds = t1 - t0, bridge_seconds = t2 - t1,
                brms = as.character(packageVersion("brms")),
                bridgesampling = as.character(packageVersion("bridgesampling"))),
           digits = NA, auto_unbox = TRUE, pretty = TRUE))
