"""The shipped tasks score exactly as before they moved onto task kinds.

The fixtures hold per-item outputs of the shipped suites (lm-eval's logs of real evaluations of
the tiny base, and crafted replies that reach every branch: misspelled brands, forbidden
promises, fenced, partial and broken JSON, labels in odd casing) with the scores the suites'
hand-written scorers gave them (tests/evaluation/fixtures/stored_outputs/README.md says how they
were made). The kind scorers, configured by the tasks' declarative keys, must give the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebook.compose import compose_recipe
from tunebook.evaluation.kinds import Scorer

FIXTURES = Path(__file__).parent / "fixtures" / "stored_outputs"
TASKS = {"triage": "tiny-lora-triage", "support": "mistral7b-qlora-support",
         "clauses": "llama8b-qlora-clauses"}


def items(suite: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{suite}.jsonl").read_text(
        encoding="utf-8").splitlines()]


@pytest.mark.parametrize("suite", sorted(TASKS))
def test_kind_scores_equal_the_hand_written_scores(suite: str):
    scorer = Scorer.from_config(compose_recipe(TASKS[suite]).config)
    stored = items(suite)
    assert len(stored) >= 100 and any(i["source"] != "crafted" for i in stored)
    for item in stored:
        got = scorer.score(item["doc"], item["reply"])
        for metric, expected in item["scores"].items():
            value = got[metric]
            if isinstance(expected, list):  # corpus-metric items: (gold, pred) or (ref, reply)
                assert list(value)[:2] == expected, (metric, item["reply"][:60])
            else:
                assert value == pytest.approx(expected, abs=1e-12), (metric, item["reply"][:80])
