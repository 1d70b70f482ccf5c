"""The functions the kind templates name (lm-eval resolves ``!function kinds.x`` beside them).

Scoring is ``tunebook.evaluation.kinds``: tunebook attaches each task's ``Scorer`` (built from
its kind and the keys in ``recipes/task/<task>.yaml``) in place of ``process_results``.
"""

from tunebook.evaluation import kinds

doc_to_text = kinds.doc_to_text
doc_to_target = kinds.doc_to_target
process_results = kinds.process_results
macro_precision = kinds.macro_precision
macro_recall = kinds.macro_recall
macro_f1 = kinds.macro_f1
