"""The commands behind ``tunebook`` (and so behind every Make target).

Each command is a pair of thin functions in one of these modules: ``<name>_args(parser)`` adds its
arguments and ``<name>(args)`` calls the domain code and returns the exit code. They parse and
print; they decide nothing. ``tunebook.cli.COMMANDS`` lists every pair in one table; domain
modules never import this package or the CLI.
"""
