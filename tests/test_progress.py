"""Progress through evaluation: a bar per run for its test cases (and the sliding-window batches of
the case being predicted), a line per case where the output is a log, nothing under --quiet; the
--jobs board's "testing case k/n" comes from the same place."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from rich.console import Console

from bench import console as console_module
from bench.console import CaseProgress, report_windows
from bench.evaluation.evaluate import predict_probabilities, window_count
from tests.conftest import invoke


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "batch"),
    [((40, 33, 20), 16, 0.5, 4), ((16, 16, 16), 16, 0.5, 4), ((100, 60, 70), 32, 0.25, 2), ((10, 50, 9), 16, 0.5, 1)],
)
def test_the_window_batches_reported_are_the_batches_monai_predicts(shape, roi, overlap, batch, monkeypatch):
    reported, calls = [], []
    monkeypatch.setattr(console_module, "_windows", lambda done, total: reported.append((done, total)))
    model = torch.nn.Conv3d(1, 3, 1)
    counted = torch.nn.Module()
    counted.forward = lambda x: (calls.append(len(x)), model(x))[1]
    predict_probabilities(counted, np.random.rand(1, *shape).astype(np.float32), roi, overlap, batch, "cpu")
    assert reported == [(k, len(calls)) for k in range(1, len(calls) + 1)]
    assert sum(calls) == window_count(shape, roi, overlap)  # every window MONAI cut, in batches of at most `batch`


def test_a_terminal_shows_the_case_and_its_windows_and_the_board_hears_of_each_case():
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=160)
    heard = []
    with CaseProgress(terminal, "unetr 12pct #0", 3, on_case=lambda k, n: heard.append((k, n))) as progress:
        report_windows(5, 12)
        progress.bar.refresh()
        assert "testing unetr 12pct #0" in out.getvalue() and "case 1: windows 5/12" in out.getvalue()
        progress.case_done("0035")
        report_windows(2, 12)
        progress.bar.refresh()
        assert "1/3" in out.getvalue() and "case 2: windows 2/12" in out.getvalue()
        progress.case_done("0036")
        progress.case_done("0037")
    assert heard == [(1, 3), (2, 3), (3, 3)]
    assert "tested case" not in out.getvalue()  # lines are for logs; a terminal has the bar
    report_windows(1, 1)  # no bar up: nothing to tell, nothing raised


@pytest.mark.slow
def test_a_log_gets_a_line_per_test_case_and_quiet_gets_none(tiny_synthetic, tmp_path, monkeypatch):
    import splits

    monkeypatch.setenv(console_module.QUIET_ENV, "0")  # --quiet sets it for the process: restored afterwards

    test_ids = splits.load_protocol().check_fraction("12pct")[0].test
    args = ["run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic]
    args += ["--profile", "smoke", "--device", "cpu", "--epochs", "1", "--profile-set", "val_every=1"]
    logged = invoke(*args, "--out", tmp_path / "logged")
    assert logged.exit_code == 0, logged.output
    for k, case in enumerate(test_ids, 1):
        assert f"unetr 12pct #0: tested case {case} ({k}/{len(test_ids)}) in " in logged.output
    assert "unetr 12pct #0: validation Dice " in logged.output and f"on {len(test_ids)} cases" in logged.output
    assert not list((tmp_path / "logged").rglob(".testing.json"))  # gone once the run is scored

    quiet = invoke(*args, "--out", tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert "tested case" not in quiet.output and "validation Dice" not in quiet.output
    assert "testing unetr" not in quiet.output and "unetr 12pct #0 ━" not in quiet.output  # no bars either
    assert "unetr (1 draw)" in quiet.output  # the table is not progress: still printed
