"""r1mega.rl."""
