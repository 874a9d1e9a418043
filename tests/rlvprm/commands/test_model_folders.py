"""Every model folder the project writes loads back and is used by the commands, with no file copied by hand.

Folders are written by the real writers at toy sizes: ``rlvprm tiny-model`` (Qwen2-VL and the hf
InternVL), the demo's SFT policy (``rlvprm.policy.toy.train_toy_policy``, what ``rlvprm demo
--from-scratch`` runs), ``rlvprm grpo`` and ``rlvprm train-prm`` of each kind (``prm``, ``prm`` with
``--likelihood-feature``, ``implicit``, ``stacked``). Each policy folder loads with ``load_vlm`` (a
real processor, not the bare tokenizer) and samples in ``rlvprm bon``; each scorer folder loads
with ``rewards.load_scorer`` as its kind and scores in ``rlvprm score`` and ``rlvprm bon``; a policy
is a scorer too as ``likelihood:FOLDER``. ``rlvprm compare`` weighs the ``grpo`` folder against the
policy it was trained from, with a trained PRM.

The quick tier (about 20 s) writes ``tiny-model``, a one-step ``train-prm`` and a one-step ``grpo``;
the rest (about 40 s in all) is ``slow``.
"""

import json
from pathlib import Path

import pytest

from rewards import load_scorer
from rewards.likelihood import ImplicitPRM, PolicyLikelihoodScorer
from rewards.loading import load_vlm
from rewards.prm import ProcessRewardModel
from rewards.stacked import StackedScorer
from rlvprm.cli import main as cli
from rlvprm.world import write_world

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["--per-device-train-batch-size", "2", "--learning-rate", "1e-3", "--use-cpu", "true",
         "--disable-tqdm", "true", "--report-to", "none", "--save-strategy", "no", "--max-steps", "1"]


def write_raw(root: Path) -> Path:
    """Four VisualPRM400K-v1.1-Raw rows on world images: two right, two with a wrong sum."""
    rows = []
    for i in range(4):
        wrong = i % 2
        steps = [f"The numbers are {i} and 2.", f"{i} + 2 = {i + 2 + wrong}.", f"The answer is \\boxed{{{i + 2 + wrong}}}."]
        rows.append({"id": f"r{i}", "image": "images/prompts/prompts-000000.png", "question": "<image>\nAdd the numbers.",
                     "answer": str(i + 2), "response": "\n\n".join(steps), "num_mc_sequences": 4,
                     "steps_with_score": [{"step": s, "score": 0.0 if wrong and k else 1.0, "num_mc_correct": 0,
                                           "num_mc_total": 4} for k, s in enumerate(steps)]})
    path = root / "raw.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tiny(arch):
    def build(root, world, get):
        assert cli(["tiny-model", "--out", str(root / f"tiny-{arch}"), "--arch", arch, "--hidden", "32",
                    "--layers", "2", "--intermediate", "64", "--vision-hidden", "32", "--vision-layers", "1"]) == 0
        return root / f"tiny-{arch}"
    return build


def _sft(root, world, get):
    from rlvprm.policy.toy import train_toy_policy

    train_toy_policy(world.root, root / "sft", read_steps=1, full_steps=1, flawed_steps=1, batch_size=4, num_sft=8,
                     progress=False)
    return root / "sft"


def _grpo(root, world, get):
    assert cli(["grpo", "--policy", str(get("tiny-qwen2-vl")), "--data", str(world.prompts), "--prm", "oracle",
                "--num-prompts", "2", "--output-dir", str(root / "grpo"), "--use-cpu", "--bf16", "false",
                "--max-steps", "1", "--per-device-train-batch-size", "2", "--num-generations", "2",
                "--max-completion-length", "8", "--beta", "0.0", "--gradient-checkpointing", "false",
                "--save-strategy", "no", "--report-to", "none", "--disable-tqdm", "true"]) == 0
    return root / "grpo"


def _train_prm(name, *extra):
    def build(root, world, get):
        if "stacked" in extra:
            args = ["--kind", "stacked", "--components", f"prm=scorer:{get('prm')},lik=likelihood:{get('tiny-qwen2-vl')}",
                    "--use-cpu", "true", "--disable-tqdm", "true", "--report-to", "none"]
        else:
            args = ["--init", str(get("tiny-qwen2-vl")), *TRAIN, *extra]
        assert cli(["train-prm", "--data", str(write_raw(world.root)), "--image-root", str(world.root),
                    "--output-dir", str(root / name), *args]) == 0
        return root / name
    return build


BUILDERS = {
    "tiny-qwen2-vl": _tiny("qwen2-vl"),
    "tiny-internvl": _tiny("internvl"),
    "sft": _sft,
    "grpo": _grpo,
    "prm": _train_prm("prm"),
    "prm-feature": _train_prm("prm-feature", "--likelihood-feature", "--aux-lm-weight", "1.0", "--label-loss", "two_way"),
    "implicit": _train_prm("implicit", "--kind", "implicit", "--beta", "0.5"),
    "stacked": _train_prm("stacked", "stacked"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("world"), seed=0, num_prompts=4, num_vpb=2, num_sft=8, progress=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, world):
    """``folder(name)``: the folder ``BUILDERS[name]`` writes, built once per module on first use."""
    root = tmp_path_factory.mktemp("folders")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = Path(BUILDERS[name](root, world, get))
        return built[name]

    return get


def use_score(world, scorer: str, tmp: Path) -> None:
    out = tmp / "scores.jsonl"
    assert cli(["score", "--model", scorer, "--data", str(world.vpb), "--out", str(out), "--device", "cpu",
                "--dtype", "float32"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["step_scores"]) == r["num_steps"] > 0 for r in rows)


def use_bon(world, scorer: str, tmp: Path, policy: str) -> None:
    out = tmp / "bon"
    assert cli(["bon", "--policy", policy, "--data", str(world.prompts), "--prm", scorer, "--n", "2",
                "--max-new-tokens", "8", "--limit", "2", "--greedy", "false", "--device", "cpu", "--dtype", "float32",
                "--out", str(out)]) == 0
    scored = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scored) == 2 and all(len(s["prm_step_scores"]) == 2 for s in scored)
    assert (out / "results.json").exists()


def use_compare(world, scorer: str, tmp: Path, base: str, rl: str) -> None:
    # The grpo folder trained on the first 2 prompts: compare on the other two.
    heldout = tmp / "heldout.jsonl"
    heldout.write_text("".join(world.prompts.read_text().splitlines(keepends=True)[2:]))
    out = tmp / "compare"
    assert cli(["compare", "--base", base, "--rl", f"rl={rl}", "--prm", scorer, "--data", str(heldout),
                "--image-root", str(world.root), "--served-prompts", "10", "--n", "2", "--max-new-tokens", "8",
                "--bon", '{"device": "cpu", "dtype": "float32"}', "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["prompts"] == 2 and set(result["policies"]) == {"base", "rl"}
    assert result["training"]["rl"]["total"] > 0


USES = {"score": use_score, "bon": use_bon, "compare": use_compare}

POLICIES = ["tiny-qwen2-vl", "tiny-internvl", "sft", "grpo"]
# name -> (folder to load, the scorer type load_scorer must give); likelihood: is a policy as scorer.
SCORERS = {
    "tiny-qwen2-vl": ("tiny-qwen2-vl", ProcessRewardModel),
    "prm": ("prm", ProcessRewardModel),
    "prm-feature": ("prm-feature", ProcessRewardModel),
    "implicit": ("implicit", ImplicitPRM),
    "stacked": ("stacked", StackedScorer),
    "likelihood:grpo": ("grpo", PolicyLikelihoodScorer),
    "likelihood:sft": ("sft", PolicyLikelihoodScorer),
}
QUICK = {"tiny-qwen2-vl", "prm", "grpo"}  # grpo: its saved processor once named an internal class
# Each policy samples in bon with one scorer, and each scorer scores one policy's candidates.
BON_PAIRS = [("tiny-qwen2-vl", "prm"), ("tiny-internvl", "tiny-qwen2-vl"), ("sft", "prm-feature"),
             ("grpo", "implicit"), ("tiny-qwen2-vl", "stacked"), ("sft", "likelihood:grpo"),
             ("grpo", "likelihood:sft")]


def tier(names, quick=QUICK):
    return [pytest.param(n, marks=() if n in quick else pytest.mark.slow) for n in names]


def scorer_path(folder, name: str) -> str:
    path = str(folder(SCORERS[name][0]))
    return f"likelihood:{path}" if name.startswith("likelihood:") else path


@pytest.mark.parametrize("name", tier(POLICIES))
def test_a_policy_folder_loads_with_its_processor(folder, name):
    model, processor = load_vlm(str(folder(name)), device="cpu")
    assert getattr(processor, "image_processor", None) is not None, type(processor).__name__
    assert processor.tokenizer.chat_template


@pytest.mark.parametrize("name", tier(SCORERS))
def test_a_scorer_folder_loads_as_its_kind_and_scores(folder, world, tmp_path, name):
    path = scorer_path(folder, name)
    scorer = load_scorer(path, device="cpu", dtype="float32")
    assert type(scorer) is SCORERS[name][1]
    if name == "prm-feature":
        assert scorer.backend.feature is not None
    USES["score"](world, path, tmp_path)


@pytest.mark.parametrize("policy, scorer", [
    pytest.param(p, s, marks=() if {p, s} <= QUICK else pytest.mark.slow) for p, s in BON_PAIRS])
def test_bon_samples_from_each_policy_and_scores_with_each_scorer(folder, world, tmp_path, policy, scorer):
    USES["bon"](world, scorer_path(folder, scorer), tmp_path, policy=str(folder(policy)))


def test_compare_weighs_a_grpo_folder_against_its_base_with_a_trained_prm(folder, world, tmp_path):
    USES["compare"](world, str(folder("prm")), tmp_path, base=str(folder("tiny-qwen2-vl")), rl=str(folder("grpo")))


def test_every_folder_and_use_is_covered():
    assert set(POLICIES) == {p for p, _ in BON_PAIRS} and set(SCORERS) == {s for _, s in BON_PAIRS}
