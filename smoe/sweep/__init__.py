"""Resumable parameter sweeps: a grid of points, each computed by an injected function, stored in SQLite."""
