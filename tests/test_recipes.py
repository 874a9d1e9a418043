"""Every recipe in the tree loads into its command's config, and says how to launch it."""

import importlib
from pathlib import Path

import pytest
import yaml

from rlvprm.cli import COMMANDS
from rlvprm.config import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "accelerate" not in p.parts and "deepspeed" not in p.parts)


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_loads(path):
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    joined = "\n".join(header).lower()
    assert "launch:" in joined and "hardware:" in joined, "header must give purpose, hardware and launch line"
    data = yaml.safe_load(text)
    command = data["command"]
    assert command in COMMANDS
    module_name, config_name, _ = COMMANDS[command]
    module = importlib.import_module(module_name)
    classes = [getattr(module, config_name), *getattr(module, "EXTRA_CONFIGS", ())]
    values = load_recipe(path, classes, command)
    assert values
