"""Render a composed recipe into a run directory, launch Axolotl on it and judge how it ended
(``run.py`` is the lifecycle; the rest are its parts)."""
