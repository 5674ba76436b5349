"""r1mega.training."""
