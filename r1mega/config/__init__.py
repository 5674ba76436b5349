"""r1mega.config."""
