"""The data side of tunebook: formats, the data checks (``checks``, with one unit per check in
``check/``), converters and leak-free splits.

Nothing here modifies an input file: cleaned copies, splits and conversions are written to the
path the user names.
"""
