# Peers of benchmarks/inference.py on the same CSVs: lmerTest's Satterthwaite and Kenward-Roger
# tables, lme4's profile intervals and bootMer (parametric bootstrap), one JSON line of seconds.
suppressMessages({library(lmerTest); library(jsonlite)})
args <- commandArgs(TRUE)
sleep <- read.csv(args[1]); sleep$Subject <- factor(sleep$Subject)
kb07 <- read.csv(args[2])
n_boot <- as.integer(args[3])
timed <- function(expr) unname(system.time(expr)["elapsed"])
out <- list()
for (case in c("sleepstudy", "kb07")) {
  f <- if (case == "sleepstudy") lmer(Reaction ~ Days + (Days | Subject), sleep)
       else lmer(rt ~ 1 + spkr + prec + load + (1 + spkr | subj) + (1 | item), kb07)
  # lmerTest computes the Hessian and Jacobian when it fits: time that step and the table
  g <- as(f, "lmerMod")
  sat <- timed({h <- lmerTest::as_lmerModLmerTest(g); s <- summary(h)})
  kr <- timed(summary(h, ddf = "Kenward-Roger"))
  prof <- timed(suppressWarnings(suppressMessages(confint(g, method = "profile"))))
  out[[case]] <- list(satterthwaite = sat, kenward_roger = kr, profile = prof)
}
g <- lmer(Reaction ~ Days + (Days | Subject), sleep)
out$bootstrap <- list(n = n_boot, seconds = timed(suppressMessages(bootMer(
  g, function(x) c(fixef(x), getME(x, "theta"), sigma(x)), nsim = n_boot, seed = 1))))
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
