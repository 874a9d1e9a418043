"""Image-only processors save under the architecture's own class name and load back."""

import json

from rewards.backends.processors import IMAGE_ONLY, load_processor


def test_plain_save_pretrained_names_the_architecture_class(tiny_models, tmp_path):
    processor = load_processor(tiny_models("qwen2-vl"))
    assert type(processor).__name__.startswith(IMAGE_ONLY)  # no torchvision here: the fallback class
    processor.save_pretrained(tmp_path)  # what TRL's trainers and Trainer.save_model call
    assert json.loads((tmp_path / "processor_config.json").read_text())["processor_class"] == "Qwen2VLProcessor"
    again = load_processor(str(tmp_path))
    assert again.image_processor is not None and again.tokenizer.get_vocab() == processor.tokenizer.get_vocab()


def test_folders_saved_with_the_fallback_name_still_load(tiny_models, tmp_path):
    processor = load_processor(tiny_models("qwen2-vl"))
    processor.save_pretrained(tmp_path)
    cfg = tmp_path / "processor_config.json"
    data = json.loads(cfg.read_text())
    data["processor_class"] = "ImageOnlyQwen2VLProcessor"  # as `rlvprm grpo` wrote it before
    cfg.write_text(json.dumps(data))
    assert load_processor(str(tmp_path)).image_processor is not None
