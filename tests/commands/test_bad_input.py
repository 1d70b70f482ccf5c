"""Bad input end to end: exit 2, one message with the fix, never a traceback."""

from __future__ import annotations

from clihelp import assert_user_error, run_tunebook

QLORA = "mistral7b-qlora-support"


def test_unknown_recipe_suggests_close_names():
    result = run_tunebook("validate", "--recipe", "mistral7b-qlora-suport")
    assert_user_error(result, "unknown recipe", f"'{QLORA}'")


def test_recipe_given_as_a_path_is_refused():
    for value in ("../etc/passwd", "recipes/mistral7b-qlora-support.yaml", "a/b"):
        result = run_tunebook("validate", "--recipe", value)
        assert_user_error(result, "is a path")
    result = run_tunebook("validate", "--recipe", "recipes/mistral7b-qlora-support.yaml")
    assert f"RECIPE={QLORA}" in result.err


def test_malformed_yaml_names_file_and_line(scratch_root):
    recipe = scratch_root / "recipes" / f"{QLORA}.yaml"
    lines = recipe.read_text().splitlines()
    lines[12] = "  status: [stable"  # line 13: an unclosed flow sequence
    recipe.write_text("\n".join(lines) + "\n")
    result = run_tunebook("validate", "--recipe", QLORA, root=scratch_root)
    assert_user_error(result, f"recipes/{QLORA}.yaml:", "malformed YAML")
    line = int(result.err.split(f"{QLORA}.yaml:")[1].split(":")[0])
    assert 13 <= line <= 15


def test_malformed_yaml_in_a_group_file(scratch_root):
    lora = scratch_root / "recipes" / "method" / "lora.yaml"
    lora.write_text(lora.read_text().replace("  lora_r: 16", "  lora_r: 16\n lora_x: : 1"))
    result = run_tunebook("validate", "--recipe", QLORA, root=scratch_root)
    assert_user_error(result, "recipes/method/lora.yaml:", "malformed YAML")


def test_bad_override_syntax():
    result = run_tunebook("validate", "--recipe", QLORA, "--overrides", "axolotl.lora_r==")
    assert_user_error(result, "bad override", "key=value")


def test_unbalanced_quotes_in_overrides():
    result = run_tunebook("validate", "--recipe", QLORA, "--overrides", "axolotl.x='a")
    assert_user_error(result, "OVERRIDES")


def test_unknown_group_option_lists_the_options():
    result = run_tunebook("validate", "--recipe", QLORA, "--overrides", "method=qlra")
    assert_user_error(result, "unknown method option 'qlra'", "'qlora'", "dpo-lora, full, lora")


def test_lora_rr_typo_through_make():
    """The issue's example, through the front door: make prints tunebook's own exit code."""
    import subprocess

    from clihelp import ROOT

    proc = subprocess.run(["make", "-s", "validate", f"RECIPE={QLORA}",
                           "OVERRIDES=+axolotl.lora_rr=8"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "did you mean 'lora_r'" in proc.stderr
    assert "Error 2" in proc.stderr
