"""Loss temperature per recipe (issue 19 item 2) and docs/recipes.md covering every recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfdistill.contexts.prompts import LEGACY_TRANSITIONS, TRANSITIONS
from selfdistill.train.config import load_config, recipe_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def test_opsd_recipes_distil_at_the_official_trainers_temperature():
    # the official OPSD trainer divides the logits by its sampling temperature
    for name, tau in (("opsd", 1.1), ("opsd-v1", 1.2), ("opsd-v3-thinking", 1.1), ("kim-opsd", 1.1)):
        cfg = load_config(name)
        assert cfg.objective.temperature == tau == cfg.sampling.temperature, name
    # parity: Purified OPSD is compared with OPSD at one tau
    assert load_config("purified-opsd").objective.temperature == load_config("opsd").objective.temperature


@pytest.mark.parametrize("name", sorted(recipe_names()))
def test_every_recipe_is_documented_and_uses_a_current_transition(name):
    assert f"## `{name}`" in DOC.read_text(), f"docs/recipes.md has no section for {name}"
    transition = load_config(name).contexts.get("transition", "hardened")
    assert transition in TRANSITIONS and transition not in LEGACY_TRANSITIONS
