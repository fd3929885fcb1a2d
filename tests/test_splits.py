from __future__ import annotations

import json
import re

import pytest

from splits import ProtocolError, built_in_protocols, load_protocol, parse_protocol, protocol_json
from splits.make_splits import LABELLED_IDS, MAKERS, PROTOCOLS_DIR, render


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_committed_protocols_equal_the_seeded_script(name):
    assert (PROTOCOLS_DIR / f"{name}.json").read_text() == render(MAKERS[name]())


def test_the_built_in_protocols_are_the_committed_files():
    assert built_in_protocols() == tuple(sorted(MAKERS))


def test_tpmamba_is_the_papers_split():
    protocol = load_protocol("tpmamba")
    assert protocol.fixed_test and protocol.compare_with_paper
    assert protocol.test_ids() == ("0035", "0036", "0037", "0038", "0039", "0040")
    ((full),) = protocol.draws["100pct"]
    assert len(full.train) == 24 and not set(full.train) & set(full.test)
    assert set(protocol.all_ids()) == set(LABELLED_IDS)
    for fraction, size in (("25pct", 6), ("12pct", 3)):
        draws = protocol.draws[fraction]
        assert len(draws) == 5 and len({d.train for d in draws}) == 5  # five different draws
        assert all(len(set(d.train)) == size and set(d.train) <= set(full.train) and d.test == full.test for d in draws)


def test_cv5_is_nnunets_own_fold_assignment():
    """nnU-Net's folds as nnunetv2 computes them: KFold(5, shuffle, seed 12345) on the sorted ids,
    recomputed here with scikit-learn directly."""
    from sklearn.model_selection import KFold

    ids = sorted(LABELLED_IDS)
    protocol = load_protocol("cv5")
    assert not protocol.fixed_test and not protocol.compare_with_paper
    folds = list(KFold(n_splits=5, shuffle=True, random_state=12345).split(ids))
    for k, (train, test) in enumerate(folds):
        fold = protocol.draws["100pct"][k]
        assert fold.train == tuple(sorted(ids[i] for i in train)) and fold.test == tuple(sorted(ids[i] for i in test))
        for fraction, size in (("25pct", 6), ("12pct", 3)):
            draw = protocol.draws[fraction][k]
            assert draw.test == fold.test and len(draw.train) == size and set(draw.train) <= set(fold.train)
    tested = [case for fold in protocol.draws["100pct"] for case in fold.test]
    assert sorted(tested) == ids  # every labelled case is tested exactly once


def test_a_protocol_file_reads_back_equal(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(protocol_json(load_protocol("cv5"))))
    again = load_protocol(str(path))
    assert (again.name, again.draws) == ("cv5", load_protocol("cv5").draws)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "is not JSON"),
        ('{"name": "x"}', "needs a name and a non-empty 'fractions' object"),
        ('{"name": "x", "fractions": {"100pct": []}}', "fraction 100pct has no draws"),
        ('{"name": "x", "fractions": {"100pct": [{"train": ["0001"]}]}}', "needs non-empty 'train' and 'test' lists"),
        ('{"name": "x", "fractions": {"100pct": [{"train": ["0001"], "test": ["0001"]}]}}', "trains and tests on 0001"),
    ],
)
def test_malformed_protocols_say_what_is_wrong(text, message):
    with pytest.raises(ProtocolError, match=message):
        parse_protocol(text, "mine.json")


def test_an_unknown_protocol_names_the_built_in_ones():
    expected = "unknown protocol 'cv10'; built-in: cv5, synapse8, tpmamba (or the path of a protocol file)"
    with pytest.raises(ProtocolError, match=re.escape(expected)):
        load_protocol("cv10")


def test_synapse8_is_transunets_split_and_organs():
    protocol = load_protocol("synapse8")
    ((draw),) = protocol.draws["100pct"]
    assert draw.test == ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")
    assert len(draw.train) == 18 and set(draw.train) | set(draw.test) == set(LABELLED_IDS)
    assert protocol.organs == ("aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen", "stomach")
    assert "trained on all 13 labels" in protocol.description and protocol.fractions == ("100pct",)
