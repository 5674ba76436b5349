"""r1mega.cli."""
