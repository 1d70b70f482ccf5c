"""Scoring of the triage suite: the first urgency label named in the reply (tunebook.evaluation.scoring)."""

from tunebook.evaluation import scoring

LABELS = ("low", "medium", "high", "critical")
doc_to_text = scoring.chat_prompt


def doc_to_target(doc):
    return scoring.chat_reference(doc).strip().lower()


def process_results(doc, results):
    gold = doc_to_target(doc)
    pred = scoring.parse_label(results[0], LABELS)
    pair = (gold, pred)
    return {"acc": float(pred == gold), "valid": float(pred != scoring.INVALID),
            "macro_precision": pair, "macro_recall": pair, "macro_f1": pair}


def macro_precision(items):
    return scoring.macro_prf(items, LABELS)[0]


def macro_recall(items):
    return scoring.macro_prf(items, LABELS)[1]


def macro_f1(items):
    return scoring.macro_prf(items, LABELS)[2]
