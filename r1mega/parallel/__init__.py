"""r1mega.parallel."""
