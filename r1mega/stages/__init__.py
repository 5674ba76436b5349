"""r1mega.stages."""
