"""The visualize stage's library: what the network is (``network``: its layers and weights), what
it computes inside (``activations``: captured per nonlinearity, and their statistics; ``conv``:
feature maps and Grad-CAM), 2-D projections of the data as its layers see it (``projection``), the
analysis that ties them together (``analysis``) and the figures drawn from it (``jobs``)."""
