"""MLflow tracking: params, metrics, gate verdict and artifacts land in one run; the registry
refuses what the gate rejected. Tier 1: no training here (see test_tracking_train.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from clihelp import OFFLINE_ENV, run_tunebook
from tunebook import cli, paths, tracking
from tunebook.rundir import RunDir
from tunebook.training import render
from tunebook.validate import validate_recipe

RECIPE = "llama8b-lora-support"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tracking") / "runs"


@pytest.fixture(autouse=True)
def _isolated(runs_root, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", runs_root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)


def _tracked_run(overrides: str = "") -> tuple[RunDir, str, dict]:
    validated = validate_recipe(RECIPE, overrides, axolotl=False)
    run = render.render(validated)
    return run, tracking.create_run(run, validated.config), validated.config


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri())


def test_default_store_is_sqlite_under_runs(runs_root):
    assert tracking.tracking_uri() == f"sqlite:///{runs_root.resolve()}/mlflow.db"
    assert tracking.is_local()


def test_create_run_logs_resolved_recipe_and_records_run_id(runs_root):
    run, run_id, config = _tracked_run("axolotl.lora_r=8")
    assert run.manifest()["mlflow_run_id"] == run_id
    got = _client().get_run(run_id)
    params = got.data.params
    assert params["axolotl.lora_r"] == "8"
    assert params["meta.model.name"] == config["meta"]["model"]["name"]
    assert params["launcher.name"] == "single"
    assert json.loads(params["eval.suites"]) == config["eval"]["suites"]
    assert len(params) > 50
    assert got.data.tags["tunebook.recipe"] == RECIPE
    assert got.data.tags["tunebook.overrides"] == "axolotl.lora_r=8"
    assert got.info.artifact_uri.startswith((runs_root.resolve() / "mlartifacts").as_uri())
    assert (runs_root / "mlflow.db").is_file()


def test_axolotl_keys_are_keys_axolotl_knows():
    from tunebook import axolotl_schema

    keys = tracking.axolotl_keys("abc")
    assert set(keys) <= axolotl_schema.axolotl_keys()
    assert keys["use_mlflow"] is True and keys["mlflow_tracking_uri"] == tracking.tracking_uri()
    assert "mlflow_run_id" not in keys  # Axolotl drops it; the run id travels in the env
    child = tracking.process_env("abc")
    assert child["MLFLOW_RUN_ID"] == "abc"
    assert child["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_scoped_environment_sets_and_restores(monkeypatch):
    import os

    from tunebook import env

    monkeypatch.setenv("MLFLOW_RUN_ID", "before")
    monkeypatch.delenv("TUNEBOOK_TEST_UNSET", raising=False)
    with env.scoped({"MLFLOW_RUN_ID": "xyz", "TUNEBOOK_TEST_UNSET": "1"}):
        assert os.environ["MLFLOW_RUN_ID"] == "xyz"
        assert os.environ["TUNEBOOK_TEST_UNSET"] == "1"
    assert os.environ["MLFLOW_RUN_ID"] == "before"
    assert "TUNEBOOK_TEST_UNSET" not in os.environ


def test_eval_gate_and_artifacts_land_in_the_same_run():
    run, run_id, _ = _tracked_run()
    tracking.log_eval(run, {"support": {"rougeL": 0.31}, "format": {"valid_json": 1.0}})
    decision = {"decision": "ship", "ship": True, "alpha": 0.05, "reasons": ["gain 0.04"]}
    assert tracking.log_gate(run, decision) == "ship"
    run.update_manifest(gate=decision)
    (run.path / "report.md").write_text("# report\n")
    tracking.log_artifacts(run)
    tracking.end_run(run)
    got = _client().get_run(run_id)
    assert got.data.metrics["eval/support/rougeL"] == pytest.approx(0.31)
    assert got.data.metrics["gate/ship"] == 1.0
    assert got.data.tags["tunebook.gate"] == "ship"
    assert got.info.status == "FINISHED"
    names = {a.path for a in _client().list_artifacts(run_id)}
    assert {"manifest.json", "axolotl.yaml", "resolved.yaml", "gate.json", "report.md"} <= names
    rows = tracking.recent_runs(recipe=RECIPE)
    row = next(r for r in rows if r["run_id"] == run_id)
    assert row["gate"] == "ship" and row["primary"] == "support/rougeL"
    assert row["primary_value"] == pytest.approx(0.31)


@pytest.mark.parametrize(("gate", "word"), [
    ({"decision": "ship", "ship": True}, "ship"), ({"decision": "do not ship", "ship": False},
                                                   "no-ship"),
    ({"decision": "no-ship"}, "no-ship"), ("ship", "ship"), (False, "no-ship"), (None, None),
    ({"reasons": []}, None),
])
def test_verdict_reads_the_gate_decision(gate, word):
    assert tracking.verdict(gate) == word


def _fake_adapter(run: RunDir) -> None:
    """An adapter's files, as training leaves them (register only moves files)."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    (run.output_dir / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 16}')
    (run.output_dir / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (run.output_dir / "checkpoint-1").mkdir()


def _register(run: RunDir):
    return run_tunebook("register", "--run", str(run.path),
                        env={"MLFLOW_TRACKING_URI": tracking.tracking_uri()})


def test_register_refuses_a_run_the_gate_rejected():
    run, _, _ = _tracked_run()
    _fake_adapter(run)
    run.update_manifest(gate={"decision": "do not ship", "ship": False})
    result = _register(run)
    assert result.code == 1, result.text
    assert "rejected by the gate" in result.err and "Traceback" not in result.text
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        _client().get_registered_model(RECIPE)


def test_register_refuses_a_run_without_gate():
    run, _, _ = _tracked_run()
    _fake_adapter(run)
    result = _register(run)
    assert result.code == 1 and "no gate decision" in result.err, result.text


def test_register_ships_the_adapter_as_a_model_version():
    run, run_id, _ = _tracked_run()
    _fake_adapter(run)
    run.update_manifest(gate={"decision": "ship", "ship": True})
    result = _register(run)
    assert result.code == 0, result.text
    assert f"as model '{RECIPE}' version" in result.out
    versions = _client().search_model_versions(f"name='{RECIPE}'")
    assert [v.run_id for v in versions] == [run_id]
    assert versions[0].source.endswith("/adapter")
    files = {Path(a.path).name for a in _client().list_artifacts(run_id, "adapter")}
    assert files == {"adapter_config.json", "adapter_model.safetensors"}  # no checkpoints
    assert run.manifest()["registered"]["version"] == versions[0].version


def test_runs_command_prints_a_table(capsys):
    _tracked_run()
    assert cli.main(["runs", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert RECIPE[:12] in out and "primary metric" in out and "gate" in out


def test_runs_command_with_empty_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "empty")
    assert cli.main(["runs"]) == 0
    assert "no runs tracked yet" in capsys.readouterr().out


def test_team_server_uri_never_lands_with_its_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:s3cret@mlflow.example.com:8443")
    assert tracking.safe_uri(tracking.tracking_uri()) == "https://mlflow.example.com:8443"
    assert "s3cret" not in json.dumps(tracking.axolotl_keys("r"))
    assert not tracking.is_local()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_store_on_localhost(runs_root):
    port = _free_port()
    cmd = tracking.ui_command(port)
    assert cmd[1] == "ui" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert tracking.tracking_uri() in cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **OFFLINE_ENV})
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow ui did not answer /health within 90 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ui_dry_run_prints_command(capsys):
    assert cli.main(["ui", "--dry-run", "--port", "5123"]) == 0
    out = capsys.readouterr().out
    assert "ui --backend-store-uri sqlite:///" in out and "--port 5123" in out


def test_register_against_another_store_is_a_user_error(tmp_path):
    run, _, _ = _tracked_run()
    _fake_adapter(run)
    run.update_manifest(gate={"decision": "ship", "ship": True})
    other = f"sqlite:///{tmp_path}/other.db"
    result = run_tunebook("register", "--run", str(run.path), env={"MLFLOW_TRACKING_URI": other})
    assert result.code == 2 and "Traceback" not in result.text, result.text
    assert "set MLFLOW_TRACKING_URI" in result.err


def test_wandb_is_one_override_away_and_off_by_default():
    on = validate_recipe(RECIPE, "+axolotl.use_wandb=true +axolotl.wandb_project=team-x")
    assert on.config["axolotl"]["use_wandb"] is True
    assert on.config["axolotl"]["wandb_project"] == "team-x"
    off = validate_recipe(RECIPE, "", axolotl=False)
    assert not any(k.startswith("wandb") or k == "use_wandb" for k in off.config["axolotl"])
