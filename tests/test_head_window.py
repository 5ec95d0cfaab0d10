"""The moving window over a recipe's training heads."""

import dataclasses

import pytest

from bids_synth.simulate.randomise import head_file_name
from bids_synth.training.head_window import HeadWindow, heads_seen, window_at, window_order
from tests.test_slabs import _shell_head, _tiny_recipe

SPECS = [("tpm", 100), ("tpm", 101), ("phantom", 100), ("phantom", 101), ("mni2009a", 100)]


def test_the_window_takes_turns_between_sources_and_wraps_around():
    assert window_order(SPECS) == [
        ("mni2009a", 100),
        ("phantom", 100),
        ("tpm", 100),
        ("phantom", 101),
        ("tpm", 101),
    ]
    assert window_at(SPECS, 3, 1, 0) == [("mni2009a", 100), ("phantom", 100), ("tpm", 100)]
    assert window_at(SPECS, 3, 2, 1) == [("tpm", 100), ("phantom", 101), ("tpm", 101)]
    assert window_at(SPECS, 3, 2, 2) == [("tpm", 101), ("mni2009a", 100), ("phantom", 100)]
    assert window_at(SPECS, 9, 1, 4) == window_at(SPECS, 5, 1, 4)  # never more than there are
    assert window_at(SPECS, 3, 0, 7) == window_at(SPECS, 3, 0, 0)
    with pytest.raises(ValueError, match="size ≥ 1"):
        window_at(SPECS, 0, 1, 0)


def test_heads_seen_counts_each_head_once():
    assert heads_seen(SPECS, 3, 1, 1) == 3
    assert heads_seen(SPECS, 3, 1, 2) == 4
    assert heads_seen(SPECS, 3, 1, 0) == 3  # the first window, before any epoch
    assert heads_seen(SPECS, 3, 2, 10) == 5


def test_a_head_is_loaded_when_it_enters_and_dropped_when_it_leaves():
    loaded = []

    def load(specs):
        loaded.extend(specs)
        return [f"{source}-{seed}" for source, seed in specs]

    window = HeadWindow(SPECS, 3, 1, load, start_epoch=10)
    assert window(5) == window(10) == ["mni2009a-100", "phantom-100", "tpm-100"]
    assert window(11) == ["phantom-100", "tpm-100", "phantom-101"]
    assert loaded == [*window_order(SPECS)[:3], ("phantom", 101)]  # each head once
    assert window(10) == ["mni2009a-100", "phantom-100", "tpm-100"]  # dropped: loaded again
    assert loaded[-1] == ("mni2009a", 100)


def test_a_windowed_run_resumes_exactly_and_its_card_counts_the_heads(tmp_path):
    from bids_synth.training.recipes import export_bundle, run_recipe

    recipe = _tiny_recipe(
        "sct-t1w-slab", train_heads=(("phantom", 1), ("phantom", 3), ("phantom", 4))
    )
    windowed = dataclasses.replace(recipe, head_window=(2, 1), fine_tune_from=0)  # moves at once
    assert "head_window" not in recipe.run_settings()
    assert windowed.run_settings()["head_window"] == [2, 1]
    for workdir in ("once", "resumed"):
        (tmp_path / workdir / "heads").mkdir(parents=True)
        for seed in (1, 2, 3, 4):
            head = _shell_head(40 + seed)  # a head of its own per seed
            head.save(tmp_path / workdir / "heads" / head_file_name("phantom", seed))
    once = run_recipe(windowed, tmp_path / "once", epochs=2)
    run_recipe(windowed, tmp_path / "resumed", epochs=1)
    resumed = run_recipe(windowed, tmp_path / "resumed", epochs=2)
    assert [row["train_loss"] for row in resumed] == [row["train_loss"] for row in once]
    bundle = export_bundle(windowed, tmp_path / "once", tmp_path / "bundle")
    assert bundle.meta["training"]["data"]["description"].startswith("3 of 3 label heads")
