"""The build's defaults are the recipe that edgedistill/distill/recipe.py measured and documents."""

from edgedistill.config import BuildConfig
from edgedistill.distill.recipe import DEFAULT_INIT_FROM_TEACHER, DEFAULT_LOSS, DEFAULT_OVERRIDES, default_recipe


def test_the_builds_defaults_are_the_recipes():
    cfg = BuildConfig()
    assert cfg.epochs == DEFAULT_OVERRIDES["epochs"]
    assert cfg.init_from_teacher is DEFAULT_INIT_FROM_TEACHER
    assert cfg.loss == "" and cfg.augment is None  # unset: the pipeline takes DEFAULT_LOSS and the recipe's augment
    weights, overrides = default_recipe(696_042, 19_818)
    assert weights == DEFAULT_LOSS and overrides == DEFAULT_OVERRIDES

