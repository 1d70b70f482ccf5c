"""Scoring of the format suite: does the reply follow the requested format (tunebook.evaluation.scoring)."""

from tunebook.evaluation import scoring


def process_results(doc, results):
    return {"format_ok": scoring.check_format(results[0], doc["check"])}
