"""smoe: sectional Mixture-of-Experts models, training and measurement in JAX/Flax NNX.

Importing the package is cheap on purpose: jax is only imported by the modules that need it,
so `smoe eopt` and friends start instantly.
"""

__version__ = "0.1.0"
