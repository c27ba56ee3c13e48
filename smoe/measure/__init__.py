"""Timing and cost measurement of the three model kinds and of the sectional model's parts.

`point.py` and `cli.py` are jax-free at import so the CLI can ask for emulated CPU devices first.
"""
