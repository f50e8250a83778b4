"""claimlens training: configs, data, the train loop and experiment tracking."""
