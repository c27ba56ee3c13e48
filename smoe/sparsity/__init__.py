"""Predictor-based contextual sparsity (ShadowLLM-style) for the dense and sectional LMs.

Per input, a light predictor scores every attention head and FFN neuron; each layer keeps its top
(1 - s) share per group and the rest are skipped, either by masking (the oracle: same FLOPs) or by
gathering the kept weights into smaller matmuls (real skipping, static shapes).
"""
