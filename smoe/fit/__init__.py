"""Fitting of sweep results: `smoe fit` (cost model with its overhead law, verdict on E_opt; fit.json,
fit.png) and the loss laws of `smoe quality report`. The mathematics lives in theory/."""
