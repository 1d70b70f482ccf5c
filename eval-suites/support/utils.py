"""Scoring of the support suite: ROUGE-L, BLEU pairs and rubric checks (tunebook.evaluation.scoring)."""

from tunebook.evaluation import scoring

doc_to_text = scoring.chat_prompt
doc_to_target = scoring.chat_reference


def process_results(doc, results):
    reply = results[0].strip()
    ref = scoring.chat_reference(doc)
    return {"rougeL": scoring.rouge_l(reply, ref), "bleu": (ref, reply),
            "brand_ok": scoring.brand_ok(reply), "policy_ok": scoring.policy_ok(reply),
            "signoff": scoring.signoff_ok(reply)}
