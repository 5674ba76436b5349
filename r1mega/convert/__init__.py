"""r1mega.convert."""
