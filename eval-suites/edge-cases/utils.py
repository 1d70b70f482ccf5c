"""Scoring of the edge-cases suite: every check of the item must pass (tunebook.evaluation.scoring)."""

from tunebook.evaluation import scoring


def process_results(doc, results):
    return {"robust": scoring.check_edge(results[0], doc["checks"])}
