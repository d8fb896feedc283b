"""Training with PyTorch Lightning: what the train stage builds from config (``build``), the
LightningModule and its in-memory data (``learner``), the stage's callbacks (``callbacks``), the
fit and what it leaves (``fit``), resuming an interrupted fit (``resume``) and the loss along the
line between the initial and the kept weights (``dynamics``)."""
