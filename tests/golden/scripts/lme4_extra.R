# Golden values for tests/golden/lme4_extra.json (run once by a developer; tests never need R).
#   Rscript tests/golden/scripts/lme4_extra.R <dir-with-csvs> > tests/golden/lme4_extra.json
# Part 1: for every shared reference case, a strict-tolerance refit's fixed-effect SEs,
#         ML deviance at the REML estimates, and conditional modes.
# Part 2: further models (categorical random slopes, crossed with slopes, ||, a:b, I()),
#         fitted with the same strict tolerances.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE); dir <- args[1]
fac <- list(sleepstudy=c("Subject"), orthodont=c("Subject","Sex"), penicillin=c("plate","sample"),
            pastes=c("batch","cask","sample"), dyestuff="Batch", dyestuff2="Batch",
            ergostool=c("Type","Subject"), radon="county",
            insteval=c("s","d","studage","lectage","service","dept"))
load_data <- function(name) {
  cc <- setNames(rep("factor", length(fac[[name]])), fac[[name]])
  d <- read.csv(file.path(dir, paste0(name, ".csv")), colClasses = cc)
  if (name == "orthodont") d$Sex <- factor(d$Sex, levels = c("Male", "Female"))
  for (f in fac[[name]]) if (all(grepl("^[0-9]+$", levels(d[[f]])))) d[[f]] <- factor(d[[f]], levels = as.character(sort(as.integer(levels(d[[f]])))))
  d
}
ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_rel = 1e-12, ftol_rel = 1e-14,
                    xtol_abs = 1e-12, ftol_abs = 1e-14, maxeval = 1e5), check.conv.singular = "ignore")
describe <- function(f) {
  vc <- as.data.frame(VarCorr(f))
  re <- lapply(ranef(f), function(r) { r <- as.data.frame(r); r$level <- rownames(r); head(r, 40) })
  list(fixef = as.list(fixef(f)), se = as.list(sqrt(diag(as.matrix(vcov(f))))),
       sigma = sigma(f), theta = unname(getME(f, "theta")),
       varcorr = vc, criterion = if (isREML(f)) REMLcrit(f) else deviance(f),
       deviance_ml = deviance(f, REML = FALSE), logLik = as.numeric(logLik(f)),
       AIC = AIC(f), BIC = BIC(f), isSingular = isSingular(f), ranef = re,
       ngrps = as.list(ngrps(f)), nobs = nobs(f))
}
shared <- list(
  sleep_slope = list("sleepstudy", Reaction ~ Days + (Days | Subject)),
  sleep_uncorr = list("sleepstudy", Reaction ~ Days + (Days || Subject)),
  sleep_int = list("sleepstudy", Reaction ~ Days + (1 | Subject)),
  ortho_slope = list("orthodont", distance ~ age + (age | Subject)),
  ortho_sex = list("orthodont", distance ~ age * Sex + (age | Subject)),
  penicillin = list("penicillin", diameter ~ 1 + (1 | plate) + (1 | sample)),
  pastes = list("pastes", strength ~ 1 + (1 | batch/cask)),
  dyestuff = list("dyestuff", Yield ~ 1 + (1 | Batch)),
  dyestuff2 = list("dyestuff2", Yield ~ 1 + (1 | Batch)),
  ergostool = list("ergostool", effort ~ Type + (1 | Subject)),
  radon = list("radon", log_radon ~ floor + (1 | county)),
  insteval = list("insteval", y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)))
extra <- list(
  radon_slope = list("radon", log_radon ~ floor + log_uranium + (floor | county),
                     "log_radon ~ floor + log_uranium + (floor | county)"),
  sleep_quad = list("sleepstudy", Reaction ~ Days + I(Days^2) + (Days | Subject),
                    "Reaction ~ Days + I(Days**2) + (Days | Subject)"),
  ortho_uncorr = list("orthodont", distance ~ age + Sex + (age || Subject),
                      "distance ~ age + Sex + (age || Subject)"),
  pastes_colon = list("pastes", strength ~ 1 + (1 | batch) + (1 | batch:cask),
                      "strength ~ 1 + (1 | batch) + (1 | batch:cask)"),
  insteval_catslope = list("insteval", y ~ 1 + service + (1 + service | dept),
                           "y ~ 1 + service + (1 + service | dept)"),
  insteval_crossed_slope = list("insteval", y ~ 1 + service + (1 | s) + (service | dept),
                                "y ~ 1 + service + (1 | s) + (service | dept)"),
  sleep_quad3 = list("sleepstudy", Reaction ~ Days + I(Days^2) + (Days + I(Days^2) | Subject),
                     "Reaction ~ Days + I(Days**2) + (Days + I(Days**2) | Subject)"),
  penicillin_int = list("penicillin", diameter ~ 1 + (1 | plate:sample) + (1 | sample),
                        NULL))
out <- list(shared = list(), extra = list())
for (nm in names(shared)) for (reml in c(TRUE, FALSE)) {
  s <- shared[[nm]]; f <- lmer(s[[2]], load_data(s[[1]]), REML = reml, control = ctrl)
  out$shared[[paste0(nm, if (reml) "_reml" else "_ml")]] <- describe(f)
}
for (nm in names(extra)) for (reml in c(TRUE, FALSE)) {
  s <- extra[[nm]]; if (is.null(s[[3]])) next
  f <- lmer(s[[2]], load_data(s[[1]]), REML = reml, control = ctrl)
  d <- describe(f); d$dataset <- s[[1]]; d$formula <- s[[3]]; d$r_formula <- deparse(s[[2]])
  out$extra[[paste0(nm, if (reml) "_reml" else "_ml")]] <- d
}
out$software <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     control = "nloptwrap xtol_rel=1e-12 ftol_rel=1e-14 xtol_abs=1e-12 ftol_abs=1e-14")
cat(toJSON(out, digits = I(15), auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE))
