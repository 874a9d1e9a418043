"""Load a VLM's processor, also where video processors cannot be built.

transformers' multimodal processors always expect a video processor, and building one needs
torchvision. Where torchvision is missing (the CPU machines this project is tested on),
``AutoProcessor.from_pretrained`` quietly returns the bare tokenizer. :func:`load_processor` checks
what it got and otherwise assembles the processor from its image processor and tokenizer through an
image-only subclass of the architecture's own processor class; the image path is unchanged.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.processing_utils import ProcessorMixin


@functools.cache
def image_only(processor_cls: type) -> type:
    """A subclass of ``processor_cls`` whose only sub-processors are an image processor and a tokenizer."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # The parent passes a third positional (video processor) to ProcessorMixin, which pairs
        # positionals with get_attributes() of *this* class and so ignores it.
        processor_cls.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.video_processor = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Any saver (rlvprm's own, TRL's trainers, Trainer.save_model) must name the architecture's
        # class, so that AutoProcessor and load_processor find it again.
        out = processor_cls.save_pretrained(self, save_directory, *args, **kwargs)
        _fix_saved_class(save_directory, processor_cls.__name__)
        return out

    return type(f"{IMAGE_ONLY}{processor_cls.__name__}", (processor_cls,),
                {"__init__": __init__, "save_pretrained": save_pretrained})


IMAGE_ONLY = "ImageOnly"


def _fix_saved_class(out_dir: str | Path, name: str) -> None:
    for file in ("processor_config.json", "tokenizer_config.json"):
        cfg = Path(out_dir) / file
        if cfg.exists():
            data = json.loads(cfg.read_text())
            if data.get("processor_class", "").startswith(IMAGE_ONLY):
                data["processor_class"] = name
                cfg.write_text(json.dumps(data, indent=2) + "\n")


def make_processor(processor_cls: type, image_processor, tokenizer, chat_template=None, **kwargs) -> ProcessorMixin:
    """Build ``processor_cls`` from an image processor and a tokenizer, with no video processor."""
    return image_only(processor_cls)(image_processor, tokenizer, chat_template=chat_template, **kwargs)


def save_processor(processor: ProcessorMixin, out_dir: str | Path) -> None:
    """Save so that ``AutoProcessor`` finds the architecture's own processor class again."""
    processor.save_pretrained(out_dir)  # an image-only processor names its parent class itself
    cfg = Path(out_dir) / "processor_config.json"
    if cfg.exists() and hasattr(processor, "image_seq_length"):
        # InternVL's processor takes this in __init__ but does not write it.
        data = json.loads(cfg.read_text())
        data["image_seq_length"] = processor.image_seq_length
        cfg.write_text(json.dumps(data, indent=2) + "\n")


def load_processor(path_or_id: str, trust_remote_code: bool = False, **kwargs) -> ProcessorMixin:
    """``AutoProcessor.from_pretrained``, falling back to an image-only processor without torchvision."""
    try:
        proc = AutoProcessor.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, **kwargs)
        if isinstance(proc, ProcessorMixin) and getattr(proc, "image_processor", None) is not None:
            return proc
    except (ImportError, TypeError, ValueError, AttributeError, OSError) as err:
        fallback_reason = err
    else:
        fallback_reason = f"AutoProcessor returned {type(proc).__name__}"
    import transformers

    name = _processor_class_name(path_or_id, **kwargs)
    processor_cls = getattr(transformers, name, None)
    if processor_cls is None:
        raise RuntimeError(f"cannot build a processor for {path_or_id}: {fallback_reason}; unknown class {name!r}")
    tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, **kwargs)
    image_processor = AutoImageProcessor.from_pretrained(path_or_id, trust_remote_code=trust_remote_code, **kwargs)
    extra = {}
    if name == "InternVLProcessor":
        extra["image_seq_length"] = _processor_config(path_or_id, **kwargs).get("image_seq_length", 256)
    return make_processor(processor_cls, image_processor, tokenizer, chat_template=tokenizer.chat_template, **extra)


def _processor_config(path_or_id: str, **kwargs) -> dict:
    from transformers.utils import cached_file

    for name in ("processor_config.json", "preprocessor_config.json"):
        try:
            f = cached_file(path_or_id, name, _raise_exceptions_for_missing_entries=False, **kwargs)
        except OSError:
            f = None
        if f:
            data = json.loads(Path(f).read_text())
            if name == "processor_config.json" or "processor_class" in data:
                return data
    return {}


def _processor_class_name(path_or_id: str, **kwargs) -> str:
    name = _processor_config(path_or_id, **kwargs).get("processor_class")
    if name:
        # Folders saved before image-only processors named their parent class.
        return name[len(IMAGE_ONLY):] if name.startswith(IMAGE_ONLY) else name
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(path_or_id, **kwargs).model_type
    return PROCESSOR_MAPPING_NAMES[model_type]
