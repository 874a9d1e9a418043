"""Fitting the stacked scorer: the logistic regression and the component specs."""

import pytest
import torch

from rlvprm.prm_training.stacked import fit_logistic, parse_components


def test_fit_logistic_recovers_known_weights():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    p = torch.sigmoid(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)
    y = (torch.rand(20000, generator=gen, dtype=torch.float64) < p).double()
    w, b = fit_logistic(x, y, l2=0.0)
    assert w == pytest.approx([2.0, -1.0], abs=0.1) and b == pytest.approx(0.5, abs=0.1)
    # A feature that carries nothing gets a weight near 0.
    noise = torch.randn(20000, 1, generator=gen, dtype=torch.float64)
    w, _ = fit_logistic(torch.cat([x, noise], 1), y, l2=0.0)
    assert abs(w[2]) < 0.05


def test_parse_components():
    assert parse_components(["prm=scorer:runs/prm", "lik=likelihood:org/policy"]) == [
        {"name": "prm", "kind": "scorer", "path": "runs/prm"},
        {"name": "lik", "kind": "likelihood", "path": "org/policy"},
    ]
    for bad in (["runs/prm"], ["a=model:x"], ["a=scorer:"]):
        with pytest.raises(ValueError, match="NAME=scorer:PATH"):
            parse_components(bad)
    with pytest.raises(ValueError, match="twice"):
        parse_components(["a=scorer:x", "a=likelihood:y"])
    with pytest.raises(ValueError, match="at least one"):
        parse_components([])
