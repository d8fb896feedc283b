"""Commands run by hand, not by DVC: ``compare`` (runs side by side), ``params`` (compose
params.yaml from conf/), ``vega`` (the offline template of `dvc plots show`)."""
