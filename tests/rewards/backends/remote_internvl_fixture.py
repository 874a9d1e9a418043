"""A tiny InternVL remote-code checkpoint, written to disk, for testing ``InternVLRemoteBackend``.

The released VisualPRM checkpoints ship their model code beside the weights (``auto_map`` in
``config.json``). This module writes a checkpoint of the same shape: ``configuration_internvl_chat.py``
and ``modeling_internvl_chat.py`` (from the strings below), a ``config.json`` naming
``InternVLChatModel``, random weights and a ChatML tokenizer with ``<img>``, ``</img>`` and
``<IMG_CONTEXT>``. It loads back through ``AutoModel.from_pretrained(..., trust_remote_code=True)``,
the path the backend uses for the real checkpoints.

Like InternVL's checkpoints it can ship ``conversation.py`` (``TEMPLATE_CODE``, written here: a
``get_conv_template`` registry with InternVL's ``MPT`` ``get_prompt`` rule) imported by its modeling
file, which sets ``template`` and ``system_message`` as the released ``__init__`` does; besides
``internvl2_5`` it registers ``tiny-chatml`` (English system message, ``<|im_end|>`` separator) so a
test can tell the checkpoint's own template from rlvprm's copy.

The model keeps the interface that matters to the backend, not InternVL's internals: ``forward``
takes ``pixel_values`` (required, as in the real code), ``input_ids``, ``attention_mask`` and
``image_flags`` (squeezed on the last axis, tiles with flag 1 kept), puts one vision token per
``<IMG_CONTEXT>`` and raises when the counts differ; ``num_image_token`` and
``img_context_token_id`` are attributes. The vision part is a patch-embedding convolution whose
patches are merged 2 x 2 (InternVL's pixel shuffle with ``downsample_ratio`` 0.5) and projected by
``mlp1``; the language model is a tiny ``Qwen2ForCausalLM``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_CODE = '''
from transformers import PretrainedConfig, Qwen2Config


class TinyVisionConfig(PretrainedConfig):
    model_type = "tiny_patch_vision"

    def __init__(self, image_size=28, patch_size=7, hidden_size=16, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_size = hidden_size


class InternVLChatConfig(PretrainedConfig):
    model_type = "internvl_chat"

    def __init__(
        self,
        vision_config=None,
        llm_config=None,
        force_image_size=None,
        downsample_ratio=0.5,
        use_thumbnail=True,
        template="internvl2_5",
        min_dynamic_patch=1,
        max_dynamic_patch=12,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(vision_config, PretrainedConfig):
            vision_config = vision_config.to_dict()
        if isinstance(llm_config, PretrainedConfig):
            llm_config = llm_config.to_dict()
        self.vision_config = TinyVisionConfig(**(vision_config or {}))
        self.llm_config = Qwen2Config(**(llm_config or {}))
        self.force_image_size = force_image_size
        self.downsample_ratio = downsample_ratio
        self.use_thumbnail = use_thumbnail
        self.template = template
        self.min_dynamic_patch = min_dynamic_patch
        self.max_dynamic_patch = max_dynamic_patch

    def to_dict(self):
        out = super().to_dict()
        out["vision_config"] = self.vision_config.to_dict()
        out["llm_config"] = self.llm_config.to_dict()
        return out
'''

TEMPLATE_CODE = '''
import copy
from dataclasses import dataclass, field
from enum import IntEnum, auto


class SeparatorStyle(IntEnum):
    CHATML = auto()
    MPT = auto()


@dataclass
class Conversation:
    name: str
    system_template: str = "{system_message}"
    system_message: str = ""
    roles: tuple = ("USER", "ASSISTANT")
    messages: list = field(default_factory=list)
    sep_style: SeparatorStyle = SeparatorStyle.MPT
    sep: str = "\\n"

    def get_prompt(self):
        out = self.system_template.format(system_message=self.system_message) + self.sep
        for role, message in self.messages:
            out += role + message + self.sep if message else role
        return out

    def append_message(self, role, message):
        self.messages.append([role, message])

    def copy(self):
        return copy.deepcopy(self)


_TEMPLATES = {}


def register_conv_template(template):
    _TEMPLATES[template.name] = template


def get_conv_template(name):
    return _TEMPLATES[name].copy()


register_conv_template(Conversation(
    name="internvl2_5",
    system_template="<|im_start|>system\\n{system_message}",
    system_message="你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
    roles=("<|im_start|>user\\n", "<|im_start|>assistant\\n"),
    sep="<|im_end|>\\n",
))
register_conv_template(Conversation(
    name="tiny-chatml",
    system_template="<|im_start|>system\\n{system_message}",
    system_message="You are a tiny test model.",
    roles=("<|im_start|>user\\n", "<|im_start|>assistant\\n"),
    sep="<|im_end|>",
))
register_conv_template(Conversation(name="tiny-chatml-style", sep_style=SeparatorStyle.CHATML))
'''

MODELING_CODE = '''
import torch
from torch import nn
from transformers import PreTrainedModel, Qwen2ForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_internvl_chat import InternVLChatConfig
#TEMPLATE_IMPORT


class InternVLChatModel(PreTrainedModel):
    config_class = InternVLChatConfig
    main_input_name = "pixel_values"
    _no_split_modules = ["Qwen2DecoderLayer"]
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        vision = config.vision_config
        tile = config.force_image_size or vision.image_size
        self.merge = int(round(1 / config.downsample_ratio))
        self.num_image_token = int((tile // vision.patch_size) ** 2 * config.downsample_ratio**2)
        self.vision_model = nn.Conv2d(3, vision.hidden_size, vision.patch_size, stride=vision.patch_size)
        self.language_model = Qwen2ForCausalLM(config.llm_config)
        merged = vision.hidden_size * self.merge**2
        hidden = config.llm_config.hidden_size
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(merged), nn.Linear(merged, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.img_context_token_id = None
        #TEMPLATE_INIT
        self.post_init()

    def extract_feature(self, pixel_values):
        """(N, 3, S, S) tiles -> (N, num_image_token, hidden)."""
        x = self.vision_model(pixel_values)  # (N, C, g, g)
        n, c, g, _ = x.shape
        r = self.merge
        # Space-to-depth: each r x r block of patches becomes one token.
        x = x.reshape(n, c, g // r, r, g // r, r).permute(0, 2, 4, 3, 5, 1)
        x = x.reshape(n, (g // r) ** 2, r * r * c)
        return self.mlp1(x)

    def forward(
        self,
        pixel_values,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        image_flags=None,
        past_key_values=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
    ):
        if self.img_context_token_id is None:
            raise ValueError("set model.img_context_token_id before calling forward")
        image_flags = image_flags.squeeze(-1)
        embeds = self.language_model.get_input_embeddings()(input_ids).clone()
        vit = self.extract_feature(pixel_values)[image_flags == 1]
        b, n, c = embeds.shape
        embeds = embeds.reshape(b * n, c)
        selected = input_ids.reshape(b * n) == self.img_context_token_id
        vit = vit.reshape(-1, c).to(embeds.dtype)
        if int(selected.sum()) != vit.shape[0]:
            raise ValueError(
                f"{int(selected.sum())} <IMG_CONTEXT> tokens for {vit.shape[0]} vision tokens"
            )
        embeds[selected] = vit
        out = self.language_model(
            inputs_embeds=embeds.reshape(b, n, c),
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            return_dict=True,
        )
        return CausalLMOutputWithPast(logits=out.logits)
'''


def build_remote_internvl(
    out_dir: str | Path,
    seed: int = 0,
    tile: int = 28,
    patch: int = 7,
    use_thumbnail: bool = True,
    template: str = "internvl2_5",
    system_message: str | None = None,
    ship_template: bool = True,
) -> Path:
    """Write the tiny remote-code checkpoint to ``out_dir``; ``num_image_token = (tile/patch)^2 / 4``.

    ``template``: ``config.template``; ``system_message``: written into the config when given;
    ``ship_template``: ship ``conversation.py`` and import it from the modeling file.
    """
    from rlvprm.models.tiny import build_tokenizer
    from transformers import AutoConfig, AutoModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "configuration_internvl_chat.py").write_text(CONFIG_CODE.lstrip())
    modeling = MODELING_CODE.lstrip()
    if ship_template:
        (out / "conversation.py").write_text(TEMPLATE_CODE.lstrip())
        modeling = modeling.replace("#TEMPLATE_IMPORT", "from .conversation import get_conv_template").replace(
            "#TEMPLATE_INIT",
            "self.template = config.template\n"
            "        self.conv_template = get_conv_template(self.template)\n"
            "        self.system_message = getattr(config, 'system_message', self.conv_template.system_message)",
        )
    (out / "modeling_internvl_chat.py").write_text(modeling)
    tok = build_tokenizer("internvl")
    config = {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "auto_map": {
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
        },
        "force_image_size": tile,
        "downsample_ratio": 0.5,
        "use_thumbnail": use_thumbnail,
        "template": template,
        **({"system_message": system_message} if system_message is not None else {}),
        "vision_config": {"image_size": tile, "patch_size": patch, "hidden_size": 16},
        "llm_config": {
            "architectures": ["Qwen2ForCausalLM"],
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": False,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    cfg = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModel.from_config(cfg, trust_remote_code=True, dtype=torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # save_pretrained rewrites config.json; the auto_map and architectures must survive it, since
    # they are what marks a remote-code checkpoint.
    saved = json.loads((out / "config.json").read_text())
    assert saved["architectures"] == ["InternVLChatModel"], saved.get("architectures")
    assert saved["auto_map"]["AutoModel"].endswith("modeling_internvl_chat.InternVLChatModel"), saved["auto_map"]
    return out
