"""The visualize stage's library: what the network computes inside (activations per layer)
and 2-D projections of the data as layers see it."""
