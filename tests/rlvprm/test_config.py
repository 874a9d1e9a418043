"""Recipes and options map onto typed dataclasses; mistakes are errors that say what to change."""

from dataclasses import dataclass
from typing import Literal

import pytest

from rlvprm.config import ConfigError, field, parse


@dataclass
class Demo:
    data: str = field(help="input")
    steps: int = field(10, help="how many")
    lr: float = field(1e-3, help="learning rate")
    flag: bool = field(False, help="a switch")
    mode: Literal["a", "b"] = field("a", help="mode")
    limit: int | None = field(None, help="optional")
    sizes: list[int] = field([1, 2], help="a list")

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("steps must be >= 0; set --steps to a count")


@dataclass
class Other:
    beta: float = field(0.0, help="kl weight")


def test_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# header\ncommand: demo\ndata: in.jsonl\nsteps: 5\nsizes: [3, 4]\nbeta: 0.1\n")
    demo, other = parse([Demo, Other], ["--config", str(recipe), "--lr", "0.5", "--flag", "--limit", "7"], command="demo")
    assert demo == Demo(data="in.jsonl", steps=5, lr=0.5, flag=True, mode="a", limit=7, sizes=[3, 4])
    assert other.beta == 0.1


def test_cli_types():
    (demo,) = parse([Demo], ["--data", "x", "--flag", "false", "--sizes", "5,6", "--mode", "b", "--limit", "none"])
    assert demo.flag is False and demo.sizes == [5, 6] and demo.mode == "b" and demo.limit is None


def test_a_list_option_given_twice_adds_up_and_replaces_the_recipe(tmp_path):
    (demo,) = parse([Demo], ["--data", "x", "--sizes", "5,6", "--sizes", "7"])
    assert demo.sizes == [5, 6, 7]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: in.jsonl\nsizes: [3, 4]\n")
    (demo,) = parse([Demo], ["--config", str(recipe), "--sizes", "8"])
    assert demo.sizes == [8]


def test_unknown_recipe_key_lists_valid_ones(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: x\nstpes: 5\n")
    with pytest.raises(ConfigError, match="unknown key.*stpes.*valid keys: .*steps"):
        parse([Demo], ["--config", str(recipe)])


def test_recipe_for_another_command(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("command: train\ndata: x\n")
    with pytest.raises(ConfigError, match="is for `rlvprm train`"):
        parse([Demo], ["--config", str(recipe)], command="demo")


def test_missing_required_and_contradiction():
    with pytest.raises(ConfigError, match="--data"):
        parse([Demo], [])
    with pytest.raises(ConfigError, match="steps must be >= 0"):
        parse([Demo], ["--data", "x", "--steps", "-1"])


def test_bad_choice_is_a_config_error():
    with pytest.raises(ConfigError, match="not one of a, b"):
        parse([Demo], ["--data", "x", "--mode", "c"])


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        parse([Demo, Other], ["--help"])
    out = capsys.readouterr().out
    for name, text in [("--data", "input"), ("--steps", "how many"), ("--beta", "kl weight"), ("--sizes", "a list")]:
        assert name in out and text in out
    assert "[default: 10]" in out


@dataclass
class Mixed:
    report_to: None | str | list[str] = field(None, help="loggers")
    kwargs: dict | str | None = field(None, help="a mapping")


def test_mixed_and_mapping_values_pass_through(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("report_to: none\nkwargs: {dtype: float32, attn: sdpa}\n")
    (m,) = parse([Mixed], ["--config", str(recipe)])
    assert m.report_to == "none" and m.kwargs == {"dtype": "float32", "attn": "sdpa"}
    (m,) = parse([Mixed], ["--kwargs", '{"a": 1}', "--report-to", "wandb"])
    assert m.kwargs == {"a": 1} and m.report_to == "wandb"


def test_trl_grpo_config_passes_through(tmp_path):
    from trl import GRPOConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("output_dir: out\nreport_to: none\nmodel_init_kwargs: {dtype: float32}\nbeta: 0.04\nuse_cpu: true\nbf16: false\n")
    (cfg,) = parse([GRPOConfig], ["--config", str(recipe), "--num-generations", "4"])
    assert cfg.model_init_kwargs == {"dtype": "float32"} and cfg.beta == 0.04 and cfg.num_generations == 4
    assert cfg.report_to == []


@dataclass
class Ranged:
    limit: int | None = field(None, min=1, help="first N")
    batch_size: int = field(8, min=1, help="per pass")
    top_p: float = field(1.0, min=0, max=1, help="nucleus")


def test_integer_fields_refuse_floats_and_bools(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 2.5\ndata: x\n")
    with pytest.raises(ConfigError, match=r"option steps: expected an integer, got 2\.5"):
        parse([Demo], ["--config", str(recipe)])
    recipe.write_text("steps: true\ndata: x\n")
    with pytest.raises(ConfigError, match="expected an integer, got True"):
        parse([Demo], ["--config", str(recipe)])
    with pytest.raises(ConfigError, match="expected an integer, got '2.5'"):
        parse([Demo], ["--data", "x", "--steps", "2.5"])
    with pytest.raises(ConfigError, match="expected a finite number"):
        parse([Demo], ["--data", "x", "--lr", "nan"])
    recipe.write_text("sizes: [1, 2.5]\ndata: x\n")
    with pytest.raises(ConfigError, match=r"expected an integer, got 2\.5"):
        parse([Demo], ["--config", str(recipe)])


def test_ranges_from_field_metadata(capsys):
    with pytest.raises(ConfigError, match="option --limit must be >= 1, got -1"):
        parse([Ranged], ["--limit", "-1"])
    with pytest.raises(ConfigError, match="option --limit must be >= 1, got 0"):
        parse([Ranged], ["--limit", "0"])
    with pytest.raises(ConfigError, match="option --batch-size must be >= 1, got 0"):
        parse([Ranged], ["--batch-size", "0"])
    with pytest.raises(ConfigError, match=r"option --top-p must be <= 1, got 1\.5"):
        parse([Ranged], ["--top-p", "1.5"])
    (r,) = parse([Ranged], ["--limit", "none", "--batch-size", "1"])
    assert r.limit is None and r.batch_size == 1
    with pytest.raises(SystemExit):
        parse([Ranged], ["--help"])
    assert "(>= 0, <= 1)" in capsys.readouterr().out


def test_extra_ranges_bound_fields_declared_elsewhere():
    from trl import GRPOConfig

    from rlvprm.commands.grpo import EXTRA_RANGES

    with pytest.raises(ConfigError, match="per-device-train-batch-size must be >= 1, got -2"):
        parse([GRPOConfig], ["--output-dir", "o", "--per-device-train-batch-size", "-2"], ranges=EXTRA_RANGES)
