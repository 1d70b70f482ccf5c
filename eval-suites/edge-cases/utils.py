"""Scoring of the edge-cases suite: every check of the item must pass.

The rules live in tunebook.evaluation.scoring, where they are unit-tested.
"""

from tunebook.evaluation import scoring


def process_results(doc, results):
    return {"robust": scoring.check_edge(results[0], doc["checks"])}
