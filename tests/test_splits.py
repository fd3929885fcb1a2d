from __future__ import annotations

from splits import load_splits
from splits.make_splits import SPLITS_FILE, make_splits, render


def test_committed_splits_equal_the_seeded_script():
    assert SPLITS_FILE.read_text() == render(make_splits())


def test_split_structure_matches_the_paper():
    splits = load_splits()
    assert splits.test == ("0035", "0036", "0037", "0038", "0039", "0040")
    (full,) = splits.train["100pct"]
    assert len(full) == 24 and not set(full) & set(splits.test)
    assert set(full) | set(splits.test) == set(splits.all_ids()) and len(splits.all_ids()) == 30
    for fraction, size in (("25pct", 6), ("12pct", 3)):
        draws = splits.train[fraction]
        assert len(draws) == 5
        for draw in draws:
            assert len(set(draw)) == size and set(draw) <= set(full)
        assert len({tuple(d) for d in draws}) == 5  # five different draws
