"""Scorers loaded by hub id from an offline Hugging Face cache score exactly as from their folders.

The cache entries are built on disk in the layout ``huggingface_hub`` writes
(``models--acme--name/refs/main`` and ``snapshots/<commit>/...``), under a temporary
``HF_HUB_CACHE``, with the hub offline: the path a user with a pulled model takes.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from rewards import load_scorer
from rewards.likelihood import ImplicitPRM
from rewards.likelihood_feature import FEATURE_CONFIG, LikelihoodFeature
from rewards.prm import ProcessRewardModel
from rewards.scorer_files import ScorerFileError, find_scorer_file
from rewards.stacked import StackedScorer
from rlvprm.models.tiny import build_tiny_model

QUESTION = "<image>\nWhat is the sum of the numbers?"
SOLUTIONS = ["The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.",
             "The numbers are 3 and 8.\n\n3 + 8 = 11.\n\nThe answer is \\boxed{11}."]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """``put(repo_id, folder)``: a cache entry of ``folder`` under ``repo_id`` in a fresh offline cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both at import; transformers and hf_hub_download read these at call time.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def put(repo_id: str, folder: Path, commit: str = COMMIT, skip: tuple[str, ...] = ()) -> str:
        entry = cache / ("models--" + repo_id.replace("/", "--"))
        (entry / "refs").mkdir(parents=True, exist_ok=True)
        (entry / "refs" / "main").write_text(commit)
        shutil.copytree(folder, entry / "snapshots" / commit, ignore=shutil.ignore_patterns(*skip), dirs_exist_ok=True)
        return repo_id

    return put


def scores(scorer, images) -> list[float]:
    """Every step score of both solutions, in order."""
    return [x for s in scorer.score_group(QUESTION, [images[0]], SOLUTIONS) for x in s.step_scores]


@pytest.fixture(scope="module")
def feature_prm(tiny_models, tmp_path_factory):
    """A PRM folder with a likelihood feature strong enough to move every score."""
    folder = tmp_path_factory.mktemp("feature-prm") / "prm"
    shutil.copytree(tiny_models("qwen2-vl"), folder)
    LikelihoodFeature(weight=0.2, bias=0.5).save(folder)
    return folder


def test_a_prm_with_a_likelihood_feature_loads_by_hub_id(feature_prm, hub_cache, images):
    repo = hub_cache("acme/toy-feature-prm", feature_prm)
    from_folder = ProcessRewardModel.from_pretrained(str(feature_prm), device="cpu", dtype="float32")
    by_id = ProcessRewardModel.from_pretrained(repo, device="cpu", dtype="float32")
    assert by_id.backend.feature == LikelihoodFeature(0.2, 0.5)
    want = scores(from_folder, images)
    assert scores(by_id, images) == pytest.approx(want, rel=1e-5)
    assert scores(load_scorer(repo, device="cpu", dtype="float32"), images) == pytest.approx(want, rel=1e-5)
    # The feature matters: the same weights without it score differently (the silent loss of issue 16).
    from_folder.backend.feature = None
    plain = scores(from_folder, images)
    assert max(abs(a - b) for a, b in zip(plain, want)) > 0.05


def test_a_revision_picks_that_snapshot(feature_prm, tiny_models, hub_cache):
    other = "fedcba9876543210fedcba9876543210fedcba98"
    hub_cache("acme/toy-feature-prm", Path(tiny_models("qwen2-vl")), commit=other)
    hub_cache("acme/toy-feature-prm", feature_prm)  # main -> COMMIT, which has the feature
    assert LikelihoodFeature.load("acme/toy-feature-prm") == LikelihoodFeature(0.2, 0.5)
    assert LikelihoodFeature.load("acme/toy-feature-prm", revision=COMMIT) == LikelihoodFeature(0.2, 0.5)
    assert LikelihoodFeature.load("acme/toy-feature-prm", revision=other) is None


def test_an_implicit_prm_loads_by_hub_id(tiny_models, tmp_path, hub_cache, images):
    folder = build_tiny_model("qwen2-vl", tmp_path / "implicit", seed=1)
    policy = hub_cache("acme/toy-policy", Path(tiny_models("qwen2-vl")))
    # The reference named inside is itself a hub id, resolved through the same cache.
    (Path(folder) / "implicit_prm.json").write_text(json.dumps({"reference": policy, "beta": 0.1, "running_min": False}))
    repo = hub_cache("acme/toy-implicit-prm", Path(folder))
    from_folder = load_scorer(str(folder), device="cpu", dtype="float32")
    by_id = load_scorer(repo, device="cpu", dtype="float32")
    assert isinstance(by_id, ImplicitPRM) and by_id.beta == 0.1 and not by_id.running_min
    assert scores(by_id, images) == pytest.approx(scores(from_folder, images), rel=1e-5)
    direct = ImplicitPRM.from_pretrained(repo, device="cpu", dtype="float32")
    assert scores(direct, images) == pytest.approx(scores(from_folder, images), rel=1e-5)


def test_a_stacked_scorer_loads_by_hub_id(feature_prm, tiny_models, tmp_path, hub_cache, images):
    prm = hub_cache("acme/toy-feature-prm", feature_prm)
    folder = tmp_path / "stacked"
    folder.mkdir()
    (folder / "stacked_scorer.json").write_text(json.dumps({
        "components": [{"name": "prm", "kind": "scorer", "path": prm},
                       {"name": "lik", "kind": "likelihood", "path": tiny_models("qwen2-vl")}],
        "weights": [0.5, 1.5], "bias": -0.25}))
    repo = hub_cache("acme/toy-stacked", folder)
    from_folder = load_scorer(str(folder), device="cpu", dtype="float32")
    by_id = load_scorer(repo, device="cpu", dtype="float32")
    assert isinstance(by_id, StackedScorer) and by_id.names == ["prm", "lik"]
    assert by_id.components[0].backend.feature == LikelihoodFeature(0.2, 0.5)
    assert scores(by_id, images) == pytest.approx(scores(from_folder, images), rel=1e-5)


def test_a_missing_required_file_is_an_error_naming_it(tiny_models, hub_cache):
    repo = hub_cache("acme/plain-model", Path(tiny_models("qwen2-vl")))
    with pytest.raises(ScorerFileError, match="implicit_prm.json"):
        ImplicitPRM.from_pretrained(repo, device="cpu")
    with pytest.raises(ScorerFileError, match="implicit_prm.json"):
        ImplicitPRM.from_pretrained(tiny_models("qwen2-vl"), device="cpu")
    # A hub id nothing of which is in the cache: every file that would tell the kind is named.
    with pytest.raises(ScorerFileError, match="stacked_scorer.json.*implicit_prm.json.*config.json"):
        load_scorer("acme/not-pulled", device="cpu")
    with pytest.raises(ScorerFileError, match="offline"):
        find_scorer_file("acme/not-pulled", "config.json", required=True)


def test_optional_files(tiny_models, hub_cache, tmp_path, caplog):
    repo = hub_cache("acme/plain-model", Path(tiny_models("qwen2-vl")))
    assert find_scorer_file(repo, "config.json").parent == tmp_path / "hf-cache/models--acme--plain-model/snapshots" / COMMIT
    assert find_scorer_file(repo, "config.json").read_text() == (Path(tiny_models("qwen2-vl")) / "config.json").read_text()
    assert find_scorer_file(tiny_models("qwen2-vl"), FEATURE_CONFIG) is None
    # Offline, a file missing from the cache may still be on the hub: absent, with a warning naming it.
    with caplog.at_level("WARNING", logger="rewards.scorer_files"):
        assert find_scorer_file(repo, FEATURE_CONFIG) is None
    assert FEATURE_CONFIG in caplog.text
    # The cache's record of an earlier "not on the hub" (.no_exist) settles it without a warning.
    caplog.clear()
    no_exist = tmp_path / "hf-cache" / "models--acme--plain-model" / ".no_exist" / COMMIT
    no_exist.mkdir(parents=True)
    (no_exist / FEATURE_CONFIG).touch()
    with caplog.at_level("WARNING", logger="rewards.scorer_files"):
        assert find_scorer_file(repo, FEATURE_CONFIG) is None
    assert caplog.text == ""


def test_old_import_paths_still_work():
    import rewards.prm
    import rewards.scorers

    assert rewards.prm.load_scorer is rewards.scorers.load_scorer is load_scorer
