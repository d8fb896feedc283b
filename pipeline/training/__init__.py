"""Training with PyTorch Lightning: the LightningModule and DataModule, the stage's callbacks,
the loss along the line between the initial and the kept weights."""
