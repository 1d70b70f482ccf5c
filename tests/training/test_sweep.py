"""``tunebook sweep``: Hydra's own grid expansion, validation of every point before training,
and the summary order (the CPU training sweep is in test_train_scaleout.py)."""

from __future__ import annotations

import json

import pytest

from tunebook import cli, paths
from tunebook.errors import UserError
from tunebook.rundir import RunDir
from tunebook.training import sweep


def test_grid_is_the_cartesian_product_in_hydra_order():
    points = sweep.expand("axolotl.learning_rate=1e-4,2e-4 axolotl.lora_r=8,16")
    assert points == [
        ["axolotl.learning_rate=0.0001", "axolotl.lora_r=8"],
        ["axolotl.learning_rate=0.0001", "axolotl.lora_r=16"],
        ["axolotl.learning_rate=0.0002", "axolotl.lora_r=8"],
        ["axolotl.learning_rate=0.0002", "axolotl.lora_r=16"],
    ]


def test_hydra_sweep_functions_and_group_sweeps():
    assert sweep.expand("axolotl.num_epochs=range(1,4)") == [
        ["axolotl.num_epochs=1"], ["axolotl.num_epochs=2"], ["axolotl.num_epochs=3"]]
    assert sweep.expand("launcher=ddp,fsdp2 axolotl.lora_r=choice(8,16)") == [
        ["launcher=ddp", "axolotl.lora_r=8"], ["launcher=ddp", "axolotl.lora_r=16"],
        ["launcher=fsdp2", "axolotl.lora_r=8"], ["launcher=fsdp2", "axolotl.lora_r=16"]]
    assert sweep.expand("axolotl.lora_r=8") == [["axolotl.lora_r=8"]]


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "SWEEP is empty"),
    ("axolotl.lora_r=8,", "bad override"),
])
def test_bad_sweep_is_a_user_error(text, fragment):
    with pytest.raises(UserError, match=fragment):
        sweep.expand(text)


def test_every_point_is_validated_before_training():
    trained = []
    with pytest.raises(UserError) as err:
        sweep.run_sweep("llama8b-lora-support", "", "axolotl.lora_rr=8,16",
                        train_fn=lambda *a, **k: trained.append(a))
    assert "sweep point 1/2 (axolotl.lora_rr=8)" in str(err.value)
    assert "did you mean 'lora_r'" in str(err.value)
    assert trained == []
    with pytest.raises(UserError, match="sweep point 2/2 .*launcher=fsdp2"):
        sweep.validate_points("qwen1.5b-full-triage", "", sweep.expand("launcher=ddp,fsdp2"))


def test_summary_is_ranked_by_validation_loss(tmp_path, monkeypatch, capsys):
    """With a stand-in trainer that leaves what the Trainer leaves (trainer_state.json)."""
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    losses = {"0.0001": 1.5, "0.0002": 0.7, "0.0003": None}

    def fake_train(recipe, overrides, *, tags):
        lr = overrides[-1].split("=")[1]
        path = tmp_path / "runs" / recipe / lr
        (path / "output" / "checkpoint-3").mkdir(parents=True)
        (path / "manifest.json").write_text(json.dumps({"status": "completed"}))
        history = [] if losses[lr] is None else [{"eval_loss": 9.0}, {"eval_loss": losses[lr]}]
        (path / "output" / "checkpoint-3" / "trainer_state.json").write_text(
            json.dumps({"log_history": history}))
        assert tags["tunebook.sweep.point"] == overrides[-1]
        return RunDir.open(path)

    rows = sweep.run_sweep("llama8b-lora-support", "", "axolotl.learning_rate=1e-4,2e-4,3e-4",
                           train_fn=fake_train, log=lambda _msg: None)
    assert [r["point"] for r in rows] == ["axolotl.learning_rate=0.0002",
                                          "axolotl.learning_rate=0.0001",
                                          "axolotl.learning_rate=0.0003"]
    assert [r["eval_loss"] for r in rows] == [0.7, 1.5, None]
    from tunebook.commands.training import _print_sweep

    _print_sweep(rows, "t")
    out = capsys.readouterr().out
    assert out.index("0.7000") < out.index("1.5000")


def test_dry_run_lists_points(capsys):
    assert cli.main(["sweep", "--recipe", "llama8b-lora-support", "--sweep",
                     "axolotl.learning_rate=1e-4,2e-4 axolotl.lora_r=8,16", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 point(s) of recipe llama8b-lora-support, all valid" in out
    assert "axolotl.learning_rate=0.0002 axolotl.lora_r=16" in out
