"""Flax score networks; `models.utils` turns a network into a `score_fn(x, t)`."""
