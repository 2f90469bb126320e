# Golden values for tests/golden/inference_lmertest.json (run once by a developer; tests never
# need R):
#   Rscript tests/golden/scripts/inference_lmertest.R bayeslmm/datasets/data tests/golden/data \
#       > tests/golden/inference_lmertest.json
# lmerTest 3.1-3 and pbkrtest 0.5.2 (Debian): coefficient tables with Satterthwaite and
# Kenward-Roger df, type III anova tables; lme4 1.1-31: likelihood-ratio anova() and profile
# confidence intervals.  Fits use lme4's default optimizer with tight tolerances.
suppressMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
args <- commandArgs(TRUE); shipped <- args[1]; golden <- args[2]
ctl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_rel = 1e-12, ftol_rel = 1e-14,
                   xtol_abs = 1e-12, ftol_abs = 1e-14, maxeval = 1e5),
                   check.conv.singular = "ignore")
sleep <- read.csv(file.path(shipped, "sleepstudy.csv"), stringsAsFactors = TRUE)
sleep$Subject <- factor(sleep$Subject)
ort <- read.csv(file.path(shipped, "orthodont.csv"), stringsAsFactors = TRUE)
ort$Sex <- factor(ort$Sex, levels = c("Male", "Female"))
ergo <- read.csv(file.path(shipped, "ergostool.csv"), stringsAsFactors = TRUE)
ergo$Subject <- factor(ergo$Subject)
pastes <- read.csv(file.path(shipped, "pastes.csv"), stringsAsFactors = TRUE)
kb07 <- read.csv(file.path(golden, "kb07.csv"), stringsAsFactors = TRUE)
coef_table <- function(f, ddf) {
  s <- summary(f, ddf = ddf)$coefficients
  list(names = rownames(s), estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
       df = unname(s[, "df"]), t = unname(s[, "t value"]), p = unname(s[, "Pr(>|t|)"]))
}
anova_table <- function(f, ddf) {
  a <- anova(f, type = 3, ddf = ddf)
  list(terms = rownames(a), num_df = unname(a[, "NumDF"]), den_df = unname(a[, "DenDF"]),
       F = unname(a[, "F value"]), p = unname(a[, "Pr(>F)"]))
}
cases <- list(
  sleepstudy = list(Reaction ~ Days + (Days | Subject), sleep),
  orthodont = list(distance ~ age * Sex + (age | Subject), ort),
  ergostool = list(effort ~ Type + (1 | Subject), ergo),
  crossed = list(rt ~ 1 + spkr + prec + load + (1 + spkr | subj) + (1 | item), kb07),
  nested = list(strength ~ 1 + (1 | batch / cask), pastes)
)
out <- list()
for (name in names(cases)) {
  f <- lmer(cases[[name]][[1]], cases[[name]][[2]], REML = TRUE, control = ctl)
  out[[name]] <- list(
    satterthwaite = coef_table(f, "Satterthwaite"),
    kenward_roger = coef_table(f, "Kenward-Roger"),
    anova_satterthwaite = anova_table(f, "Satterthwaite"),
    anova_kenward_roger = anova_table(f, "Kenward-Roger"),
    contest_satterthwaite = NULL)
}
# a 2-df linear hypothesis on orthodont: Sex[Female] = 0 and age:Sex[Female] = 0
f <- lmer(distance ~ age * Sex + (age | Subject), ort, REML = TRUE, control = ctl)
L <- rbind(c(0, 0, 1, 0), c(0, 0, 0, 1))
ct <- contest(f, L, ddf = "Satterthwaite")
out$orthodont$contest_satterthwaite <- list(num_df = ct$NumDF, den_df = ct$DenDF, F = ct$`F value`,
                                            p = ct$`Pr(>F)`)
# likelihood-ratio tests (lme4's anova refits with ML)
s0 <- lmer(Reaction ~ Days + (1 | Subject), sleep, REML = TRUE, control = ctl)
s1 <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE, control = ctl)
s2 <- lmer(Reaction ~ 1 + (Days | Subject), sleep, REML = TRUE, control = ctl)
lrt <- function(a) list(models = rownames(a), npar = unname(a$npar), aic = unname(a$AIC),
                        bic = unname(a$BIC), loglik = unname(a$logLik),
                        deviance = unname(a$deviance), chisq = unname(a$Chisq),
                        df = unname(a$Df), p = unname(a$`Pr(>Chisq)`))
out$lrt_sleepstudy_re <- lrt(suppressMessages(anova(s0, s1)))
out$lrt_sleepstudy_fixed <- lrt(suppressMessages(anova(s2, s1)))
out$lrt_sleepstudy_reml <- lrt(suppressMessages(anova(s0, s1, refit = FALSE)))
# profile and Wald intervals (lme4)
prof <- function(f, method) {
  ci <- suppressWarnings(suppressMessages(confint(as(f, "lmerMod"), method = method, level = 0.95)))
  list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}
out$confint_sleepstudy_profile <- prof(s1, "profile")
out$confint_sleepstudy_wald <- prof(s1, "Wald")
f_ort <- lmer(distance ~ age * Sex + (1 | Subject), ort, REML = TRUE, control = ctl)
out$confint_orthodont_ri_profile <- prof(f_ort, "profile")
out$meta <- list(lmerTest = as.character(packageVersion("lmerTest")),
                 pbkrtest = as.character(packageVersion("pbkrtest")),
                 lme4 = as.character(packageVersion("lme4")))
cat(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", pretty = TRUE))
