"""InternVLRemoteBackend against a tiny remote-code checkpoint loaded through the real path.

The checkpoint (``remote_internvl_fixture.py``) has 28-px tiles and 4 image tokens per tile; it is
written once per module and loaded with ``ProcessRewardModel.from_pretrained(..., backend="auto",
trust_remote_code=True)``, so detection, ``AutoModel``/``AutoTokenizer`` and the remote forward
all run for real.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from rewards.backends.base import InputError
from rewards.backends.internvl_remote import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InternVLRemoteBackend,
    choose_grid,
    tile_image,
)
from rewards.conversation import SYSTEM_PROMPT, build_conversation
from rewards.prm import Group, ProcessRewardModel, detect_backend

TILE, TOKENS_PER_TILE = 28, 4
QUESTION = "What is the sum of the numbers in the image?"
SOLUTION = "The numbers are 3 and 7.\n\n3 + 7 = 10.\n\nThe answer is \\boxed{10}."


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, remote_internvl):
    return remote_internvl(tmp_path_factory.mktemp("remote_internvl") / "ckpt", tile=TILE)


@pytest.fixture(scope="module")
def prm(ckpt):
    return ProcessRewardModel.from_pretrained(
        str(ckpt), backend="auto", trust_remote_code=True, dtype="float32", device="cpu"
    )


@pytest.fixture(scope="module")
def backend(prm) -> InternVLRemoteBackend:
    return prm.backend


def noise_image(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# --- tiling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, grid",
    [
        ((448, 448), (1, 1)),  # square: 1 tile; (2, 2) ties but the image is not > half its area
        ((896, 448), (2, 1)),
        ((448, 1344), (1, 3)),  # tall
        ((800, 800), (2, 2)),  # tie on aspect: 640000 > 0.5 * 4 tiles' area, < 0.5 * 9 tiles'
        ((1000, 1000), (3, 3)),  # and here > 0.5 * 9 tiles' area (903168)
        ((3000, 100), (12, 1)),  # very wide: capped by max_num
    ],
)
def test_grid_for_448_tiles(size, grid):
    assert choose_grid(*size, tile=448) == grid


def test_grid_respects_max_num():
    assert choose_grid(1000, 1000, 448, max_num=4) == (2, 2)
    assert choose_grid(3000, 100, 448, max_num=6) == (6, 1)


@pytest.mark.parametrize(
    "size, tiles",
    [((28, 28), 1), ((56, 28), 3), ((28, 84), 4), ((50, 50), 5), ((60, 60), 10)],
)
def test_tile_counts_include_the_thumbnail(size, tiles):
    x = tile_image(noise_image(*size, seed=0), tile=TILE)
    assert x.shape == (tiles, 3, TILE, TILE) and x.dtype == torch.float32


def test_no_thumbnail_when_switched_off():
    assert tile_image(noise_image(56, 28, seed=0), tile=TILE, use_thumbnail=False).shape[0] == 2


def test_white_image_normalises_to_imagenet_constants():
    x = tile_image(Image.new("RGB", (56, 28), "white"), tile=TILE)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x, expected.view(1, 3, 1, 1).expand_as(x), atol=1e-6)


def test_tiles_are_cut_row_major_then_the_thumbnail():
    # A 56 x 56 image of four coloured quadrants is exactly a 2 x 2 grid (no resampling), so each
    # tile is one flat colour: top-left, top-right, bottom-left, bottom-right.
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    img = Image.new("RGB", (56, 56))
    for k, c in enumerate(colours):
        img.paste(c, (28 * (k % 2), 28 * (k // 2), 28 * (k % 2) + 28, 28 * (k // 2) + 28))
    x = tile_image(img, tile=TILE)
    assert x.shape[0] == 5
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    for k, c in enumerate(colours):
        expected = (torch.tensor(c, dtype=torch.float32) / 255 - mean) / std
        assert torch.allclose(x[k], expected.view(3, 1, 1).expand(3, TILE, TILE), atol=1e-5), k
    # The thumbnail halves the image: its top-left pixel is red.
    assert torch.allclose(x[4, :, 0, 0], (torch.tensor([1.0, 0, 0]) - mean) / std, atol=1e-5)


def test_greyscale_and_rgba_images_become_rgb():
    assert tile_image(Image.new("L", (28, 28), 255), tile=TILE).shape == (1, 3, TILE, TILE)
    assert tile_image(Image.new("RGBA", (56, 28)), tile=TILE).shape == (3, 3, TILE, TILE)


# --- prompt ---------------------------------------------------------------------------------------


def _image_block(tiles):
    return "<img>" + "<IMG_CONTEXT>" * (TOKENS_PER_TILE * tiles) + "</img>"


def test_backend_reads_its_constants_from_the_checkpoint(backend):
    assert (backend.tile, backend.num_image_token, backend.use_thumbnail, backend.max_num) == (TILE, 4, True, 12)
    assert backend.model.training is False
    assert backend.tokenizer.decode([backend.good_id]) == "+"
    assert backend.tokenizer.decode([backend.bad_id]) == "-"


def test_prompt_layout_one_image_training_prompt(ckpt):
    # The training prompt; the checkpoint's own prompt (the default) is tested in test_internvl_prompt.py.
    backend = InternVLRemoteBackend.from_pretrained(str(ckpt), prm_prompt="training")
    conv = build_conversation(QUESTION, ["Step one.", "Step two."])
    batch = backend.encode([conv], [[noise_image(56, 28, seed=1)]])  # 2 x 1 grid + thumbnail
    text = backend.tokenizer.decode(batch.inputs["input_ids"][0])
    expected = (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n### Question:\n{_image_block(3)}\n{QUESTION}\n\n"
        "### Solution Process:\nStep one.<|im_end|>\n"
        "<|im_start|>assistant\n+<|im_end|>\n"
        "<|im_start|>user\nStep two.<|im_end|>\n"
        "<|im_start|>assistant\n+<|im_end|>\n"
    )
    assert text == expected
    assert int((batch.inputs["input_ids"] == backend.img_context_id).sum()) == 3 * TOKENS_PER_TILE
    assert batch.inputs["pixel_values"].shape == (3, 3, TILE, TILE)
    assert batch.inputs["image_flags"].tolist() == [[1], [1], [1]]


def test_two_images_each_take_their_own_tiles_in_order(backend):
    small, wide = noise_image(28, 28, seed=2), noise_image(56, 28, seed=3)  # 1 tile, 3 tiles
    conv = build_conversation("<image>\nLeft.\n<image>\nRight. Which is larger?", ["Step."], num_images=2)
    batch = backend.encode([conv], [[small, wide]])
    text = backend.tokenizer.decode(batch.inputs["input_ids"][0])
    assert f"### Question:\n{_image_block(1)}\nLeft.\n{_image_block(3)}\nRight." in text
    pv = batch.inputs["pixel_values"]
    assert torch.equal(pv[:1], backend.tile_image(small))
    assert torch.equal(pv[1:], backend.tile_image(wide))


# --- read positions and input errors --------------------------------------------------------------


def test_read_positions_predict_the_placeholder_in_its_own_assistant_turn(backend):
    convs = [build_conversation(QUESTION, ["A.", "B.", "C."]), build_conversation(QUESTION, ["Only step."])]
    batch = backend.encode(convs, [[noise_image(28, 28, seed=4)], [noise_image(28, 56, seed=5)]])
    tok = backend.tokenizer
    for i, positions in enumerate(batch.read_positions):
        assert len(positions) == convs[i].num_steps
        ids = batch.inputs["input_ids"][i, : batch.lengths[i]].tolist()
        for k, p in enumerate(positions):
            assert tok.decode([ids[p + 1]]) == "+"
            before = tok.decode(ids[: p + 1])
            assert before.endswith("<|im_start|>assistant\n")
            assert before.count("<|im_start|>assistant") == k + 1
    assert batch.inputs["attention_mask"][1].sum() == batch.lengths[1] < batch.lengths[0]


def test_over_length_names_the_conversation(ckpt):
    short = InternVLRemoteBackend.from_pretrained(str(ckpt), max_length=400)
    ok = build_conversation(QUESTION, ["A."])
    long = build_conversation(QUESTION, ["A long step. " * 60])
    with pytest.raises(InputError, match="conversation 1 has .* tokens, over max_length=400"):
        short.encode([ok, long], [[noise_image(28, 28, seed=6)]] * 2)


def test_image_markup_in_the_text_is_rejected(backend):
    conv = build_conversation(QUESTION, ["I see <IMG_CONTEXT> here."])
    with pytest.raises(InputError, match="step 1 contains '<IMG_CONTEXT>'"):
        backend.encode([conv], [[noise_image(28, 28, seed=7)]])
    for marker in ("<img>", "</img>", "<|im_start|>"):
        with pytest.raises(InputError, match=f"step 1 contains '{marker.replace('|', '[|]')}'"):
            backend.encode([build_conversation(QUESTION, [f"x {marker} y"])], [[noise_image(28, 28, seed=7)]])


def test_image_count_mismatch_is_rejected(backend):
    conv = build_conversation(QUESTION, ["A."], num_images=1)
    with pytest.raises(InputError, match="image slots"):
        backend.encode([conv], [[]])


# --- scores ---------------------------------------------------------------------------------------


def test_single_pass_scores_equal_per_prefix_scores(prm):
    image = noise_image(56, 28, seed=8)
    full = prm.score_group(QUESTION, [image], [SOLUTION])[0]
    steps = [s.text for s in full.steps]
    assert len(steps) == 3
    for k in range(1, 4):
        prefix = prm.score_group(QUESTION, [image], ["\n\n".join(steps[:k])])[0]
        assert prefix.step_scores[-1] == pytest.approx(full.step_scores[k - 1], abs=1e-5)
    assert all(0 < p < 1 for p in full.step_scores)


def test_scores_do_not_depend_on_batch_composition(prm):
    image = noise_image(28, 56, seed=9)
    alone = prm.score_group(QUESTION, [image], [SOLUTION])[0].step_scores
    longer = [SOLUTION + "\n\nCheck: 10 - 7 = 3." * n for n in (2, 5)]
    batched = prm.score_group(QUESTION, [image], [longer[0], SOLUTION, longer[1]])
    assert batched[1].step_scores == pytest.approx(alone, abs=1e-5)


def test_a_different_image_changes_the_scores(prm):
    a = prm.score_group(QUESTION, [noise_image(56, 28, seed=10)], [SOLUTION])[0].step_scores
    b = prm.score_group(QUESTION, [Image.new("RGB", (56, 28), "white")], [SOLUTION])[0].step_scores
    assert max(abs(x - y) for x, y in zip(a, b)) > 1e-4


def test_text_only_equals_the_remote_forward_with_no_flagged_tile(backend):
    # A text-only batch goes to model.language_model; the remote forward with one dummy tile whose
    # flag is 0 (InternVL's own way to train on text) must give the same logits.
    conv = build_conversation(QUESTION, ["A.", "B."], num_images=0)
    batch = backend.encode([conv], [[]])
    assert "pixel_values" not in batch.inputs
    got = backend.step_logits(batch)
    backend.model.img_context_token_id = backend.img_context_id
    with torch.no_grad():
        out = backend.model(
            pixel_values=torch.zeros(1, 3, TILE, TILE),
            input_ids=batch.inputs["input_ids"],
            attention_mask=batch.inputs["attention_mask"],
            image_flags=torch.zeros(1, 1, dtype=torch.long),
        )
    pos = batch.read_positions[0]
    want = out.logits[0, pos][:, [backend.good_id, backend.bad_id]]
    assert torch.allclose(got[0], want, atol=1e-5)


def test_mixed_batch_with_and_without_images(backend):
    with_image = build_conversation(QUESTION, ["A.", "B."])
    text_only = build_conversation(QUESTION, ["A."], num_images=0)
    image = noise_image(56, 28, seed=11)
    with torch.no_grad():
        mixed = backend.step_logits(backend.encode([text_only, with_image], [[], [image]]))
        a = backend.step_logits(backend.encode([text_only], [[]]))
        b = backend.step_logits(backend.encode([with_image], [[image]]))
    assert mixed.shape == (2, 2, 2)
    assert torch.allclose(mixed[0, :1], a[0], atol=1e-5) and torch.equal(mixed[0, 1], torch.zeros(2))
    assert torch.allclose(mixed[1], b[0], atol=1e-5)


# --- loading --------------------------------------------------------------------------------------


def test_detect_backend_picks_internvl_remote(ckpt):
    assert detect_backend(str(ckpt)) == "internvl-remote"


def test_loading_without_trust_remote_code_is_refused(ckpt):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        ProcessRewardModel.from_pretrained(str(ckpt), backend="auto")


def test_a_likelihood_feature_is_refused_by_the_remote_backend(ckpt, tmp_path):
    import shutil

    from rewards.likelihood_feature import LikelihoodFeature

    folder = tmp_path / "with-feature"
    shutil.copytree(ckpt, folder)
    LikelihoodFeature().save(folder)
    with pytest.raises(ValueError, match="only the hf backend"):
        ProcessRewardModel.from_pretrained(str(folder), trust_remote_code=True, device="cpu", dtype="float32")


def test_the_released_checkpoints_backend_splits_as_their_code_does(ckpt, prm):
    image = noise_image(56, 28, seed=11)
    assert prm.step_split == "released"
    (got,) = prm.score_group(QUESTION, [image], ["a\n\n\n\nb"])
    assert [s.text for s in got.steps] == ["a", "", "b"] and len(got.step_scores) == 3
    # The empty piece is an empty user turn with its own placeholder, as in the released code.
    conv = prm.prepare(Group(QUESTION, [image], ["a\n\n\n\nb"]))[0][1]
    assert [t.text for t in conv.turns if t.role == "user"][1:] == ["", "b"]
    own = ProcessRewardModel(prm.backend, step_split="rlvprm")
    assert [s.text for s in own.score_group(QUESTION, [image], ["a\n\n\n\nb"])[0].steps] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown step split"):
        ProcessRewardModel(prm.backend, step_split="official")


@pytest.mark.parametrize("with_images", [0, 1, 2])
def test_shared_prefix_equals_whole_sequences(prm, with_images):
    """Shared-prefix group scores equal whole-sequence scores (one or two images, text only, padding)."""
    from tests.conftest import digit_image

    imgs = [digit_image("3 7 5"), digit_image("8 1", (56, 28))][:with_images]
    question = " ".join(["<image>"] * with_images) + " What is the sum?"
    sols = ["a = 3\n\nb = 4\n\nc = 7", "a = 3\n\nb = 5", "one step only, a longer one than the others", "a = 3"]
    convs = [c for _, c in prm.prepare(Group(question, imgs, sols))]
    assert prm.backend.group_step_logits(convs, imgs, 3) is not None  # the shared path, not a fallback
    saved, prm.batch_size, prm.shared_prefix = prm.batch_size, 3, False
    whole = [r.step_scores for r in prm.score_group(question, imgs, sols)]
    prm.shared_prefix = True
    shared = [r.step_scores for r in prm.score_group(question, imgs, sols)]
    prm.batch_size = saved
    assert [len(s) for s in shared] == [3, 2, 1, 1]
    for a, b in zip(whole, shared):
        assert b == pytest.approx(a, abs=1e-5)
