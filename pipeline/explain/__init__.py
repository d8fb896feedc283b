"""The explain stage's library: closed-form and batched DeepSHAP/DeepLIFT, the
weight-randomisation sanity check, similarity measures, the surrogate tree."""
