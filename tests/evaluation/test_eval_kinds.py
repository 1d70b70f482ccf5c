"""Each task kind's scorer on known replies, against values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebook.evaluation import kinds
from tunebook.evaluation.kinds import INVALID, Check, Scorer


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


LABELS = ("Billing", "Tech Support", "sales", "very high", "high")


@pytest.mark.parametrize(("reply", "label"), [
    ("billing", "Billing"),
    ("  TECH   support. ", "Tech Support"),  # case and whitespace normalised
    ("I think very high, not high", "very high"),  # a longer label wins over one it contains
    ("it is high; maybe sales", "high"),  # the first label mentioned
    ("highway robbery", INVALID),  # whole words only
    ("", INVALID),
])
def test_classification_parses_the_first_label_mentioned(reply: str, label: str):
    assert kinds.parse_label(reply, LABELS) == label


def test_classification_metrics_by_hand():
    scorer = Scorer(kind="classification", labels=("a", "b", "c"))
    docs = [chat("x", g) for g in ("a", "a", "b", "c")]
    replies = ["a", "b", "b", "none of them"]
    items = [scorer.score(d, r) for d, r in zip(docs, replies, strict=True)]
    assert [i["acc"] for i in items] == [1.0, 0.0, 1.0, 0.0]
    assert [i["valid"] for i in items] == [1.0, 1.0, 1.0, 0.0]
    # by hand: precision a=1/1, b=1/2, c=0 (never predicted) -> 0.5; recall a=1/2, b=1/1, c=0/1
    # -> 0.5; F1 a=2/3, b=2/3, c=0 -> 4/9
    pairs = [i["macro_f1"] for i in items]
    assert kinds.macro_precision(pairs) == pytest.approx(0.5)
    assert kinds.macro_recall(pairs) == pytest.approx(0.5)
    assert kinds.macro_f1(pairs) == pytest.approx(4 / 9)
    assert kinds.confusion([(p[0], p[1]) for p in pairs], ("a", "b", "c")) == \
        [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]


def test_extraction_metrics_by_hand(tmp_path: Path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({
        "type": "object", "additionalProperties": False,
        "properties": {"city": {"type": "string"}, "qty": {"type": "integer"},
                       "note": {"type": ["string", "null"]}}}))
    scorer = Scorer(kind="extraction", schema_path=str(schema),
                    fields=kinds.schema_fields(schema))
    gold = json.dumps({"city": "The Lisbon", "qty": 3, "note": None})
    doc = chat("order", gold)
    same = scorer.score(doc, '```json\n{"city": "lisbon.", "qty": 3.0}\n```')
    assert same == {"json_valid": 1.0, "schema_valid": 1.0,  # 3.0 is an integer to JSON Schema
                    "field_precision": 1.0, "field_recall": 1.0, "field_f1": 1.0,
                    "exact_match": 1.0}
    # predicted facts {city: porto, qty: 3, note: x}; gold {city: lisbon, qty: 3}:
    # precision 1/3, recall 1/2, F1 = 2*1/(3+2) = 0.4
    half = scorer.score(doc, '{"city": "Porto", "qty": 3, "note": "x"}')
    assert half["field_precision"] == pytest.approx(1 / 3)
    assert half["field_recall"] == pytest.approx(1 / 2)
    assert half["field_f1"] == pytest.approx(0.4)
    assert half["schema_valid"] == 1.0 and half["exact_match"] == 0.0
    bad = scorer.score(doc, "no json here")
    assert bad["json_valid"] == 0.0 and bad["field_f1"] == 0.0 and bad["exact_match"] == 0.0
    empty_gold = chat("order", json.dumps({"note": None}))
    assert scorer.score(empty_gold, "{}")["field_f1"] == 1.0  # both state nothing


def test_generation_metrics_and_checks_by_hand():
    checks = (Check.from_spec("signoff", {"must_match": r"The Team[.!]*\s*\Z"}),
              Check.from_spec("no_promise", {"must_not_include": ["lifetime warranty"]}),
              Check.from_spec("short", {"max_words": 5}),
              Check.from_spec("named", {"must_include": "Ana", "case_sensitive": True}))
    scorer = Scorer(kind="generation", checks=checks)
    doc = chat("help", "Hi Ana, the parcel ships today. The Team")
    exact = scorer.score(doc, "Hi Ana, the parcel ships today. The Team")
    assert exact["rougeL"] == pytest.approx(1.0) and exact["chrf"] == pytest.approx(1.0)
    assert exact["bleu"] == ("Hi Ana, the parcel ships today. The Team",
                             "Hi Ana, the parcel ships today. The Team")
    assert (exact["signoff"], exact["no_promise"], exact["short"], exact["named"]) == \
        (1.0, 1.0, 0.0, 1.0)
    other = scorer.score(doc, "Lifetime Warranty, ana! The Team!  ")
    assert (other["signoff"], other["no_promise"], other["short"], other["named"]) == \
        (1.0, 0.0, 1.0, 0.0)
    # ROUGE-L by hand: reference 8 tokens, reply "hi ana the team" is a 4-token subsequence:
    # P = 4/4, R = 4/8, F = 2PR/(P+R) = 2/3
    assert scorer.score(doc, "hi ana the team")["rougeL"] == pytest.approx(2 / 3)


def test_preference_rows_are_scored_against_the_chosen_reply():
    pair = {"prompt": [{"role": "user", "content": "Where is my order?"}],
            "chosen": {"role": "assistant", "content": "It ships today."},
            "rejected": {"role": "assistant", "content": "No idea."}}
    assert kinds.doc_to_text(pair) == "Where is my order?"
    assert kinds.doc_to_target(pair) == "It ships today."
    scorer = Scorer(kind="preference")
    assert scorer.score(pair, "It ships today.")["rougeL"] == pytest.approx(1.0)
    assert scorer.score(pair, "No idea.")["rougeL"] == 0.0


def test_the_template_placeholder_refuses_to_score_alone():
    with pytest.raises(RuntimeError, match="make baseline"):
        kinds.process_results(chat("q", "a"), ["a"])


def test_metric_lists_name_what_the_scores_return():
    for scorer in (Scorer(kind="classification", labels=("a", "b")),
                   Scorer(kind="extraction"),
                   Scorer(kind="generation", checks=(Check("c"),))):
        names = {m["metric"] for m in scorer.metric_list()}
        doc = chat("q", '{"a": 1}' if scorer.kind == "extraction" else "a")
        assert names == set(scorer.score(doc, "a")), scorer.kind
