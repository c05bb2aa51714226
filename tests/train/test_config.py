"""Recipes and the precedence of training values (flowstudy.train.config.resolve_config)."""

from __future__ import annotations

from flowstudy.train.config import RECIPES, resolve_config


def test_recipe_model_options_merge_key_by_key_with_the_users(monkeypatch):
    monkeypatch.setitem(RECIPES, "mlp", {**RECIPES["mlp"], "model": {"hidden_dim": 64, "num_layers": 3}})
    cfg = resolve_config({"model": {"num_layers": 2}}, {"arch": "mlp-tiny"})
    assert cfg.model == {"hidden_dim": 64, "num_layers": 2}  # the file's key wins, the recipe's other key stays
    cfg = resolve_config(None, {"arch": "mlp", "model": {"hidden_dim": 32}})
    assert cfg.model == {"hidden_dim": 32, "num_layers": 3}
    assert RECIPES["mlp"]["model"] == {"hidden_dim": 64, "num_layers": 3}  # the recipe itself is untouched
    assert resolve_config(None, {"arch": "mlp"}).model == {"hidden_dim": 64, "num_layers": 3}
