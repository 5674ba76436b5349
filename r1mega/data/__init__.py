"""r1mega.data."""
