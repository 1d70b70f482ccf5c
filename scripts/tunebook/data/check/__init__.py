"""The data checks, one unit per check (``registry`` lists them and says how to add one), and
the streaming engine that runs them. The public API is ``tunebook.data.checks``."""
