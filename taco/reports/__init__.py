"""The statistics room: a sweep's runs read back from MLflow and turned into reports.

`runs` reads a sweep (its parent, variants, logged config); `seeds` is the table of a seed
study (mean, t-interval); `cross_validation` pools one cross-validation's folds (these trained
models on these images: bootstrap and paired permutation tests); `repeated` tests recipes over
repeated cross-validation (corrected resampled t-test); `floors` the trivial predictors every
report shows; `resampling` the bootstrap and permutation arithmetic; `reproduce` a study's
committed numbers against a new run; `tables` the one table writer (Markdown, CSV, MLflow);
`document` a study's REPORT.md. Figures are drawn by `taco.plots`. `taco.tracking` keeps what
talks to MLflow while training.
"""
