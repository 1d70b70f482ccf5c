"""Scoring of the format suite: does the reply follow the requested format (tunebook.scoring)."""

from tunebook import scoring


def process_results(doc, results):
    return {"format_ok": scoring.check_format(results[0], doc["check"])}
