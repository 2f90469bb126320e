# Golden values for tests/golden/residual_nlme.json (run once by a developer; tests never need R):
#   Rscript tests/golden/scripts/residual_nlme.R <repo>/bayeslmm/datasets/data tests/golden/data \
#       > tests/golden/residual_nlme.json
# nlme 3.1-162 (Debian r-cran-nlme).  Writes the data it fits that the package does not ship
# (nlme's Ovary and BodyWeight, and a simulated unbalanced repeated-measures set) to the second
# directory.  Every fit uses tight tolerances; "cov" is getVarCov's residual covariance of a
# group observed at every occasion (sigma^2 D C D).
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(TRUE); shipped <- args[1]; out_dir <- args[2]
tight_gls <- glsControl(maxIter = 1000, msMaxIter = 1000, tolerance = 1e-10, msTol = 1e-12,
                        returnObject = TRUE)
tight_lme <- lmeControl(maxIter = 1000, msMaxIter = 1000, niterEM = 100, tolerance = 1e-10,
                        msTol = 1e-12, returnObject = TRUE)
describe <- function(f, full_group) {
  ll <- logLik(f)
  cov <- NULL
  if (!is.null(full_group)) {
    cov <- tryCatch({
      v <- if (inherits(f, "lme")) getVarCov(f, individuals = full_group,
                                              type = "conditional")[[1]]
           else getVarCov(f, individual = full_group)
      v <- unclass(v); attributes(v) <- list(dim = dim(v)); v
    }, error = function(e) NULL)   # gls without a correlation structure: not implemented
  }
  cs <- f$modelStruct$corStruct
  vs <- f$modelStruct$varStruct
  list(logLik = as.numeric(ll), df = attr(ll, "df"), fixef = as.list(if (inherits(f, "lme"))
       fixef(f) else coef(f)), se = unname(sqrt(diag(vcov(f)))), sigma = f$sigma,
       cor = if (is.null(cs)) NULL else unname(coef(cs, unconstrained = FALSE)),
       var = if (is.null(vs)) NULL else as.list(coef(vs, unconstrained = FALSE)),
       cov = cov, nobs = f$dims$N)
}
gls_fit <- function(form, data, cor = NULL, weights = NULL, method, full_group) {
  f <- gls(form, data, correlation = cor, weights = weights, method = method,
           control = tight_gls)
  describe(f, full_group)
}
out <- list()

# -- Orthodont: distance ~ age * Sex, no random effects -----------------------------------
ort <- read.csv(file.path(shipped, "orthodont.csv"), stringsAsFactors = TRUE)
ort$Sex <- factor(ort$Sex, levels = c("Male", "Female"))
ort$visit <- (ort$age - 8) / 2 + 1
ort$fage <- factor(ort$age)
for (method in c("REML", "ML")) {
  m <- tolower(method)
  out[[paste0("orthodont_us_", m)]] <- gls_fit(distance ~ age * Sex, ort,
      corSymm(form = ~ visit | Subject), varIdent(form = ~ 1 | fage), method, "M01")
  out[[paste0("orthodont_cs_", m)]] <- gls_fit(distance ~ age * Sex, ort,
      corCompSymm(form = ~ visit | Subject), NULL, method, "M01")
  out[[paste0("orthodont_csh_", m)]] <- gls_fit(distance ~ age * Sex, ort,
      corCompSymm(form = ~ visit | Subject), varIdent(form = ~ 1 | fage), method, "M01")
  out[[paste0("orthodont_diag_", m)]] <- gls_fit(distance ~ age * Sex, ort, NULL,
      varIdent(form = ~ 1 | fage), method, "M01")
  out[[paste0("orthodont_ar1_", m)]] <- gls_fit(distance ~ age * Sex, ort,
      corAR1(form = ~ visit | Subject), NULL, method, "M01")
  # ar1 on the ages themselves (8, 10, 12, 14: every lag even, so the likelihood is symmetric
  # in phi and nlme's default start phi = 0 is a stationary point it never leaves): from 0.5
  out[[paste0("orthodont_ar1_age_", m)]] <- gls_fit(distance ~ age * Sex, ort,
      corAR1(0.5, form = ~ age | Subject), NULL, method, "M01")
  out[[paste0("orthodont_toep_", m)]] <- gls_fit(distance ~ age * Sex, ort,
      corARMA(form = ~ visit | Subject, p = 3), NULL, method, "M01")
  out[[paste0("orthodont_ols_", m)]] <- gls_fit(distance ~ age * Sex, ort, NULL, NULL,
      method, NULL)
  out[[paste0("orthodont_varident_sex_", m)]] <- gls_fit(distance ~ age * Sex, ort, NULL,
      varIdent(form = ~ 1 | Sex), method, NULL)
  f <- lme(distance ~ age * Sex, ort, random = ~ 1 | Subject, method = method,
           weights = varIdent(form = ~ 1 | Sex), control = tight_lme)
  out[[paste0("orthodont_lme_varident_", m)]] <- describe(f, NULL)
  f <- lme(distance ~ age * Sex, ort, random = ~ 1 | Subject, method = method,
           correlation = corAR1(form = ~ visit | Subject), control = tight_lme)
  out[[paste0("orthodont_lme_ar1_", m)]] <- describe(f, "M01")
}

# -- nlme's own corAR1 and corCAR1 examples with random effects -------------------------------
ov <- as.data.frame(Ovary)
ov$Mare <- factor(as.character(ov$Mare), levels = unique(as.character(ov$Mare)))
ov$s <- sin(2 * pi * ov$Time); ov$c <- cos(2 * pi * ov$Time)
ov$visit <- ave(seq_along(ov$Mare), ov$Mare, FUN = seq_along)
write.csv(ov[, c("Mare", "Time", "follicles", "s", "c", "visit")],
          file.path(out_dir, "ovary.csv"), row.names = FALSE)
bw <- as.data.frame(BodyWeight)
bw$Rat <- factor(as.character(bw$Rat), levels = unique(as.character(bw$Rat)))
bw$Diet <- factor(as.character(bw$Diet))
write.csv(bw[, c("Rat", "Time", "Diet", "weight")], file.path(out_dir, "bodyweight.csv"),
          row.names = FALSE)
for (method in c("REML", "ML")) {
  m <- tolower(method)
  f <- lme(follicles ~ s + c, ov, random = list(Mare = pdDiag(~ s)), correlation = corAR1(form = ~ visit | Mare),
           method = method, control = tight_lme)
  out[[paste0("ovary_ar1_", m)]] <- describe(f, NULL)
  f <- lme(weight ~ Time * Diet, bw, random = ~ Time | Rat, method = method,
           correlation = corCAR1(form = ~ Time | Rat), control = tight_lme)
  out[[paste0("bodyweight_car1_", m)]] <- describe(f, NULL)
}

# -- simulated unbalanced repeated measures with missing visits ------------------------------
set.seed(20261201)
n_id <- 80; n_visit <- 5
sim <- expand.grid(visit = seq_len(n_visit), id = seq_len(n_id))
sim$id <- factor(sprintf("S%02d", sim$id))
arm <- rbinom(n_id, 1, 0.5)
sim$arm <- factor(ifelse(arm[as.integer(sim$id)] == 1, "trt", "pbo"), levels = c("pbo", "trt"))
sim$x <- rnorm(nrow(sim))
sim$time <- sim$visit + runif(nrow(sim), -0.3, 0.3)
sds <- c(1, 1.2, 1.4, 1.6, 1.9)
corr <- 0.7^abs(outer(1:n_visit, 1:n_visit, "-")) * 0.8 + 0.2 * diag(n_visit)
sigma_full <- diag(sds) %*% corr %*% diag(sds)
e <- t(chol(sigma_full)) %*% matrix(rnorm(n_visit * n_id), n_visit)
sim$y <- 10 + 0.5 * sim$visit + 0.8 * (sim$arm == "trt") * sim$visit + 0.6 * sim$x + as.vector(e)
sim <- sim[runif(nrow(sim)) > 0.15, ]           # about 15% of visits missing at random
full_id <- as.character(names(which(table(sim$id) == n_visit))[1])
sim$fvisit <- factor(paste0("V", sim$visit))
write.csv(sim[, c("id", "visit", "fvisit", "time", "arm", "x", "y")], file.path(out_dir,
          "resid_sim.csv"), row.names = FALSE)
form <- y ~ fvisit * arm + x
for (method in c("REML", "ML")) {
  m <- tolower(method)
  out[[paste0("sim_us_", m)]] <- gls_fit(form, sim, corSymm(form = ~ visit | id),
      varIdent(form = ~ 1 | fvisit), method, full_id)
  out[[paste0("sim_diag_", m)]] <- gls_fit(form, sim, NULL, varIdent(form = ~ 1 | fvisit),
      method, full_id)
  out[[paste0("sim_cs_", m)]] <- gls_fit(form, sim, corCompSymm(form = ~ visit | id), NULL,
      method, full_id)
  out[[paste0("sim_csh_", m)]] <- gls_fit(form, sim, corCompSymm(form = ~ visit | id),
      varIdent(form = ~ 1 | fvisit), method, full_id)
  out[[paste0("sim_ar1_", m)]] <- gls_fit(form, sim, corAR1(form = ~ visit | id), NULL,
      method, full_id)
  out[[paste0("sim_car1_", m)]] <- gls_fit(form, sim, corCAR1(form = ~ time | id), NULL,
      method, NULL)
  out[[paste0("sim_toep_", m)]] <- gls_fit(form, sim, corARMA(form = ~ visit | id, p = 4), NULL,
      method, full_id)
  f <- lme(y ~ fvisit * arm + x, sim, random = ~ 1 | id, correlation = corAR1(form = ~ visit | id),
           method = method, control = tight_lme)
  out[[paste0("sim_lme_ar1_", m)]] <- describe(f, full_id)
}
out$meta <- list(nlme = as.character(packageVersion("nlme")), full_group_sim = full_id)
cat(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", pretty = TRUE))
