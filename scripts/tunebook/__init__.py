"""tunebook: Hydra-composed fine-tuning recipes, rendered for Axolotl, gated by data checks and
paired evaluation against the base model. The package is deliberately thin: composition is
Hydra's, training is Axolotl's, evaluation is lm-evaluation-harness's."""

__version__ = "0.1.0"
