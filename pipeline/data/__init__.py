"""Datasets: the loaders ``conf/data/*.yaml`` name, each returning a ``Dataset``."""
