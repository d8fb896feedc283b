"""The explain stage's library: the explainers (``explainers``: one function each, named by
``conf/explain/<name>.yaml``), closed-form and batched DeepSHAP (``fast_deep``, ``deep_lift`` and
its ``rules``), the trust statistics (``trust``, ``similarity``), the weight-randomisation sanity
check (``sanity``), the surrogate tree (``surrogate``), the core that runs them in order
(``core``) and what is drawn and recorded of the result (``jobs``)."""
