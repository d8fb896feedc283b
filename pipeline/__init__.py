"""glassnet: train a neural network, evaluate it, explain it, and report on it.

Stages run as ``python -m pipeline <stage>`` (prepare, train, evaluate, explain, visualize,
report, publish; ``python -m pipeline.<stage>`` works too), chained by ``dvc.yaml``.
"""

__all__: list[str] = []
