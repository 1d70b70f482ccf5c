"""Evaluate base and tuned model on the same held-out items with lm-evaluation-harness, decide
whether the tuned model ships (``ship_gate.py``) and report it."""
