"""r1mega.launch."""
