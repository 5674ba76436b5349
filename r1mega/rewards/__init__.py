"""r1mega.rewards."""
