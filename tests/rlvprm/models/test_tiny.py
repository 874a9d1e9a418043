"""Tiny models load through the ordinary from_pretrained path and have a usable tokenizer."""

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from rewards.backends.processors import load_processor
from rewards.loading import load_vlm
from rlvprm.cli import main as cli

TEXTS = [
    "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.",
    "Ünïcödé, emoji ✓ and tabs\tare fine; x^2 - 4 = 0 → x = ±2",
    "  leading spaces and trailing newline\n",
]


def test_tokenizer_round_trips_and_isolates_plus_minus(tiny_models, arch):
    tok = AutoTokenizer.from_pretrained(tiny_models(arch))
    for t in TEXTS:
        assert tok.decode(tok.encode(t, add_special_tokens=False)) == t
    for sign in "+-":
        ids = tok.encode(sign, add_special_tokens=False)
        assert len(ids) == 1
        # After the assistant header it is still one token of its own.
        after = tok.encode("<|im_start|>assistant\n" + sign + "<|im_end|>", add_special_tokens=False)
        assert ids[0] in after
    assert tok.convert_tokens_to_ids("+") != tok.convert_tokens_to_ids("-")


def test_model_and_processor_load(tiny_models, arch, images):
    path = tiny_models(arch)
    model, processor = load_vlm(path)
    assert not model.training
    assert processor.image_processor is not None and processor.tokenizer is not None
    assert isinstance(AutoModelForImageTextToText.from_pretrained(path), type(model))
    meta = json.loads(open(f"{path}/rlvprm_tiny.json").read())
    assert meta["arch"] == arch
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read it."}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    enc = processor(text=[text], images=[[images[0]]], return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc)
    assert out.logits.shape[:2] == enc["input_ids"].shape
    assert torch.isfinite(out.logits).all()


def test_seed_makes_weights_reproducible(tmp_path):
    a = cli(["tiny-model", "--arch", "qwen2-vl", "--out", str(tmp_path / "a"), "--seed", "3"])
    b = cli(["tiny-model", "--arch", "qwen2-vl", "--out", str(tmp_path / "b"), "--seed", "3"])
    assert a == b == 0
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_processor_config_names_the_real_class(tiny_models, arch):
    cfg = json.loads(open(f"{tiny_models(arch)}/processor_config.json").read())
    assert not cfg["processor_class"].startswith("ImageOnly")
    proc = load_processor(tiny_models(arch))
    assert type(proc).__name__.endswith(cfg["processor_class"])


def test_bad_sizes_rejected():
    from rlvprm.commands.tiny_model import TinyModelConfig

    with pytest.raises(ValueError, match="divisible"):
        TinyModelConfig(out="x", hidden=100, heads=3)
