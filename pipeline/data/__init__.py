"""Datasets: the loaders ``conf/data/*.yaml`` name by ``data.loader._target_``, each returning a
``Dataset`` (``dataset``), and prepare's pure core (``split``) and what it writes (``summary``).

    data=digits          bundled.load_digits: scikit-learn's 8x8 digits (the default)
    data=breast_cancer   bundled.load_breast_cancer: the Wisconsin breast cancer table
    data=diabetes        bundled.load_diabetes: a numeric target (regression)
    data=mnist           idx.load_mnist: the real MNIST from its four IDX files
    data=csv             table.load_table: your own CSV or Parquet file
"""
