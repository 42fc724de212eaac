"""SSL-TIE model, LVS + equivariance + silence/noise losses, the training loop and checkpoints."""
