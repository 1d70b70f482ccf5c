"""Scoring of the clauses suite: JSON validity, schema adherence, field F1 (tunebook.evaluation.scoring)."""

import json

from tunebook import paths
from tunebook.evaluation import scoring

SCHEMA = paths.DATA_TEMPLATES / "datasets" / "clauses" / "answer.schema.json"
KEYS = ("governing_law", "term_months", "notice_period_days", "liability_cap", "auto_renewal")
doc_to_text = scoring.chat_prompt
doc_to_target = scoring.chat_reference


def process_results(doc, results):
    pred = scoring.extract_json(results[0])
    gold = json.loads(scoring.chat_reference(doc))
    return {"json_valid": float(pred is not None), "schema_valid": scoring.schema_ok(pred, SCHEMA),
            "field_f1": scoring.field_f1(pred, gold, KEYS)}
