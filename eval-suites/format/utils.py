"""Scoring of the format suite: does the reply follow the requested format.

The rules live in tunebook.evaluation.scoring, where they are unit-tested.
"""

from tunebook.evaluation import scoring


def process_results(doc, results):
    return {"format_ok": scoring.check_format(results[0], doc["check"])}
