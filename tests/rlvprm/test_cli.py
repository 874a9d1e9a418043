"""`rlvprm COMMAND`: every error is one line naming the command, exit status 1, no traceback."""

import pytest

from rlvprm.cli import main as cli


def test_option_errors_are_one_line(capsys):
    assert cli(["tiny-model", "--out", "x", "--layers", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlvprm tiny-model: option --layers must be >= 1, got 0") and err.count("\n") == 1
    assert cli(["tiny-model", "--out", "x", "--heads", "0"]) == 1  # was a ZeroDivisionError
    assert "--heads must be >= 1" in capsys.readouterr().err
    assert cli(["score", "--model", "m", "--data", "d", "--out", "o", "--limit", "-1"]) == 1
    assert "option --limit must be >= 1, got -1" in capsys.readouterr().err
    assert cli(["score", "--model", "m", "--data", "d", "--out", "o", "--bogus", "1"]) == 1
    assert "unrecognized arguments: --bogus 1" in capsys.readouterr().err


def test_runtime_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "nope.jsonl"
    args = ["label", "--convert", "--data", str(missing), "--out", str(tmp_path / "o.jsonl")]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlvprm label: ") and str(missing) in err and "Traceback" not in err
    assert err.count("\n") == 1
    with pytest.raises(ValueError, match="nope.jsonl"):
        cli(["--debug", *args])
    monkeypatch.setenv("RLVPRM_DEBUG", "1")
    with pytest.raises(ValueError, match="nope.jsonl"):
        cli(args)
