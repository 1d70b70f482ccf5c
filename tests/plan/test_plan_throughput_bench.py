"""scripts/bench/throughput.py without a GPU: the peer config is Axolotl's own example doing the
recipe's work (checked by the installed Axolotl), the report's arithmetic, the log parsing, and
a clear refusal when there is no CUDA."""

from __future__ import annotations

import pytest
import yaml

from clihelp import ROOT, load_script

SCRIPT = ROOT / "scripts" / "bench" / "throughput.py"


bench = load_script(SCRIPT, "bench_throughput")


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    from tunebook.compose import compose_recipe
    from tunebook.rundir import RunDir
    from tunebook.training.render import axolotl_config

    scratch = tmp_path_factory.mktemp("throughput")
    config = compose_recipe("mistral7b-qlora-support").config
    rendered = axolotl_config(config, RunDir(path=scratch / "render", recipe="r", run_id="b"))
    example = yaml.safe_load(bench.PEER.read_text(encoding="utf-8"))
    base = str(scratch / "base")
    return (rendered, example, base,
            bench.recipe_side(rendered, base, scratch / "recipe"),
            bench.peer_side(example, rendered, base, scratch / "peer"))


def test_peer_keeps_axolotls_speed_settings_and_takes_the_recipes_work(sides):
    rendered, example, base, recipe, peer = sides
    # everything that decides speed is the example's
    for key in ("sequence_len", "sample_packing", "micro_batch_size", "lora_r", "optimizer",
                "attn_implementation", "gradient_checkpointing", "gradient_accumulation_steps"):
        assert peer[key] == example[key], key
    assert peer["sequence_len"] == 8192 and peer["sample_packing"] is True
    # the work is the recipe's: its base, data and chat template
    assert peer["datasets"] == rendered["datasets"] == recipe["datasets"]
    assert peer["chat_template"] == rendered["chat_template"]
    assert peer["base_model"] == recipe["base_model"] == base
    assert "model_type" not in peer and "tokenizer_type" not in peer
    # both measured the same way: one epoch, nothing but training, written under the scratch
    for side in (recipe, peer):
        assert side["num_epochs"] == 1 and side["val_set_size"] == 0.0
        assert side["eval_strategy"] == "no" and side["save_strategy"] == "no"
        assert "test_datasets" not in side and "eval_steps" not in side
        assert not any(k.startswith("wandb_") for k in side)
    assert peer["output_dir"].endswith("peer/output")
    assert recipe["output_dir"].endswith("recipe/output")
    # the recipe's own speed settings are untouched
    assert recipe["sequence_len"] == rendered["sequence_len"]
    assert recipe["micro_batch_size"] == rendered["micro_batch_size"]


def test_both_sides_are_configs_axolotl_accepts(sides):
    from tunebook.axolotl_schema import run_validate_config, unknown_keys

    *_, recipe, peer = sides
    for name, side in (("recipe", recipe), ("peer", peer)):
        assert unknown_keys(side) == [], name
        checked = run_validate_config(side, name)
        assert checked["num_epochs"] == 1, name


def test_report_prints_tokens_per_second_and_the_ratio(sides):
    *_, recipe_cfg, peer_cfg = sides
    recipe = bench.Side("mistral7b-qlora-support (tunebook)", recipe_cfg, 1_000_000, [110.0, 100.0])
    peer = bench.Side("Axolotl mistral_qlora.yml", peer_cfg, 1_000_000, [125.0, 130.0])
    out = bench.format_report(recipe, peer, "NVIDIA H200")
    # best runs: 1,000,000 / 100 s = 10,000 tok/s and 1,000,000 / 125 s = 8,000 tok/s
    assert "10,000 tok/s" in out and "8,000 tok/s" in out
    assert "ratio recipe / Axolotl example: 1.25x (at least as fast" in out
    assert "sequence_len 8192, packing True" in out and "NVIDIA H200" in out
    slow = bench.format_report(bench.Side("r", recipe_cfg, 500_000, [100.0]), peer, "gpu")
    assert "0.62x (SLOWER" in slow


def test_runtime_and_useful_tokens():
    log = "step 3\n{'train_runtime': '123.45', 'train_samples_per_second': '1.2'}\n"
    assert bench.runtime_of(log) == 123.45
    assert bench.runtime_of("{'loss': 1.0}\n{'train_runtime': 12.5, 'epoch': 1.0}") == 12.5
    with pytest.raises(RuntimeError, match="did not finish training"):
        bench.runtime_of("Traceback ...")
    # rows longer than sequence_len are dropped: 100 + 1024 of [100, 1024, 1025]
    assert bench.useful_tokens([100, 1024, 1025], 1024) == 1124


def test_refuses_without_cuda(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    assert bench.main([]) == 2
    err = capsys.readouterr().err
    assert "CUDA GPU" in err and "nothing was measured" in err
