"""The model-family registry agrees with transformers and with the files it names."""

from __future__ import annotations

import pytest

from tunebook import families, twins
from tunebook.errors import UserError

NAMES = families.names()


@pytest.mark.parametrize("name", NAMES)
def test_family_matches_its_transformers_class(name: str):
    import transformers

    family = families.get(name)
    model_cls = getattr(transformers, family.architecture)
    # FSDP wraps one decoder layer: the class's own _no_split_modules names it
    assert family.decoder_layer in model_cls._no_split_modules
    config = transformers.AutoConfig.for_model(family.model_type)
    assert type(config).__name__.lower().startswith(family.model_type.replace("_", ""))
    assert family.chat_template.is_file(), f"{family.chat_template} is missing"
    for token in (family.bos, family.eos, family.pad):
        assert token is None or token in family.specials


@pytest.mark.parametrize("name", NAMES)
def test_layout_flags_match_a_real_model_of_the_class(name: str):
    """What the planner counts (fused projections, norms, biases, soft-capping) is what the
    class builds: checked on the family's own tiny configuration, built on the meta device."""
    import torch
    import transformers

    family = families.get(name)
    config = transformers.AutoConfig.for_model(family.model_type, vocab_size=64, pad_token_id=0,
                                               **family.twin_config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    layer = model.model.layers[0]
    linear = {n.split(".")[-1] for n, m in layer.named_modules()
              if isinstance(m, torch.nn.Linear)}
    assert ("qkv_proj" in linear) == family.fused_projections, linear
    norms = [n for n, m in layer.named_modules() if "norm" in type(m).__name__.lower()]
    assert len(norms) == family.norms_per_layer, norms
    q = dict(layer.named_modules()).get("self_attn.q_proj")
    assert (q is not None and q.bias is not None) == family.qkv_bias
    assert bool(getattr(config, "final_logit_softcapping", None)) == \
        family.final_logit_softcapping
    assert bool(getattr(config, "attn_logit_softcapping", None)) == \
        family.attn_logit_softcapping
    assert family.cpu_attention == ("eager" if family.attn_logit_softcapping else "sdpa")


def test_unknown_family_names_the_known_ones():
    with pytest.raises(UserError, match="families: gemma2, llama, mistral, phi3, qwen2"):
        families.get("falcon")
    with pytest.raises(UserError, match="did you mean 'llama'"):
        twins.twin_path("lama")


def test_every_model_option_names_a_registered_family():
    from tunebook import compose

    for option in compose.group_options("model"):
        import yaml

        from tunebook import paths

        meta = yaml.safe_load((paths.RECIPES / "model" / f"{option}.yaml").read_text())["meta"]
        assert meta["model"]["family"] in families.FAMILIES, option
