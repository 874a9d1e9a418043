"""The prompt of the InternVL remote-code backend: the checkpoint's own, or the training prompt.

The released VisualPRM checkpoints were trained with one prompt and are scored by their own code
with another. ``prm_prompt`` chooses which one :class:`~rewards.backends.internvl_remote.InternVLRemoteBackend`
writes:

- ``checkpoint`` (the default): the prompt the loaded checkpoint's code builds when it scores
  (``generate_steps_with_soft_score_v2`` of ``InternVLRewardModel`` in the public copies of the
  VisualPRM remote code). The conversation template is the one ``config.template`` names, taken from
  the checkpoint's own ``conversation.py`` (the ``get_conv_template`` its modeling file imports)
  when it ships one, else from :data:`INTERNVL_TEMPLATES`. The system message is
  ``config.system_message`` when the config has that key, else the template's default: for
  ``internvl2_5`` InternVL's own (Chinese) assistant prompt, not the PRM prompt. The turns are
  written as InternVL's ``Conversation.get_prompt`` writes the ``MPT`` separator style:
  ``system_template.format(system_message) + sep``, then ``role + message + sep`` per message, and
  the role alone for an empty message (an empty step of the ``released`` split).
- ``training``: the prompt VisualPRM400K was trained with: the PRM system prompt of the
  conversation (``rewards.conversation.SYSTEM_PROMPT``) and every turn, empty or not, as
  ``<|im_start|>{role}\\n{value}<|im_end|>\\n`` (InternVL's ``preprocess_internvl2_5``).

Where the facts come from: InternVL's ``internvl_chat/internvl/conversation.py`` (the templates,
``get_prompt``), ``model/internvl_chat/modeling_internvl_chat.py`` (the system-message rule),
``train/dataset.py`` (the training format), and a public copy of VisualPRM's reward-model code (the
scoring prompt). No released checkpoint was loaded here, so whether VisualPRM-8B(-v1_1)'s
``config.json`` has a ``system_message`` (and hence which prompt ``checkpoint`` means for it) is not
known; :meth:`ChatFormat.describe` records which rule applied, and every scores file keeps it.
Left out: templates whose separator style is not ``MPT`` (a checkpoint naming one is refused with
a message pointing at ``prm_prompt='training'``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

PRM_PROMPTS = ("checkpoint", "training")
CHATML_SYSTEM = "<|im_start|>system\n{system_message}"
CHATML_ROLES = ("<|im_start|>user\n", "<|im_start|>assistant\n")

# InternVL's ChatML templates (conversation.py): name -> (default system message, separator).
# Hermes-2 and internlm2-chat end a turn without the newline that internvl2_5 writes.
_INTERNLM_SYSTEM = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
INTERNVL_TEMPLATES = {
    "internvl2_5": (
        "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
        "<|im_end|>\n",
    ),
    "Hermes-2": (_INTERNLM_SYSTEM, "<|im_end|>"),
    "internlm2-chat": (_INTERNLM_SYSTEM, "<|im_end|>"),
}


@dataclass(frozen=True)
class ChatFormat:
    """How one prompt is written: InternVL's ``MPT`` separator style, or the training pipeline's."""

    prm_prompt: str  # "checkpoint" | "training"
    template: str  # the template's name, as the config gives it ("training" for the training format)
    system_message: str | None  # None: the conversation's own system turn (the PRM prompt)
    system_from: str  # where system_message comes from, in words
    template_from: str  # where the template's fields come from, in words
    sep: str = "<|im_end|>\n"
    roles: tuple[str, str] = CHATML_ROLES
    system_template: str = CHATML_SYSTEM
    close_empty: bool = True  # False: an empty message is written as its role alone (get_prompt)

    @property
    def assistant_header(self) -> str:
        return self.roles[1]

    def render(self, system: str, turns: Sequence[tuple[str, str]]) -> str:
        """The prompt for the conversation's system text and its ``(role, content)`` user/assistant turns."""
        message = system if self.system_message is None else self.system_message
        out = [self.system_template.format(system_message=message) + self.sep]
        for role, content in turns:
            header = self.roles[role == "assistant"]
            out.append(header + content + self.sep if content or self.close_empty else header)
        return "".join(out)

    def describe(self) -> dict:
        """What a scores file records about its prompt."""
        return {"prm_prompt": self.prm_prompt, "template": self.template, "template_from": self.template_from,
                "system_message_from": self.system_from, "system_message": self.system_message}


def training_format() -> ChatFormat:
    return ChatFormat("training", "training", None, "the PRM system prompt (rewards.conversation.SYSTEM_PROMPT)",
                      "VisualPRM400K's training format (InternVL preprocess_internvl2_5)")


def checkpoint_format(model) -> ChatFormat:
    """The format the checkpoint's own code writes (module docstring), read from ``model`` and its code."""
    config = model.config
    name = getattr(config, "template", None)
    own = _own_template(model, name)
    if own is not None:
        style = getattr(getattr(own, "sep_style", None), "name", None)
        if style != "MPT":
            raise ValueError(f"the checkpoint's template {name!r} uses separator style {style!r}, which rlvprm does not "
                             "write; use prm_prompt='training'")
        default, sep = own.system_message, own.sep
        roles, system_template = tuple(own.roles), own.system_template
        template_from = "the checkpoint's conversation.py"
    elif name in INTERNVL_TEMPLATES:
        (default, sep), roles, system_template = INTERNVL_TEMPLATES[name], CHATML_ROLES, CHATML_SYSTEM
        template_from = "InternVL's conversation.py (rlvprm's copy; the checkpoint ships none)"
    else:
        raise ValueError(f"the checkpoint's template {name!r} is neither defined by its own code nor one of InternVL's "
                         f"ChatML templates ({', '.join(INTERNVL_TEMPLATES)}); use prm_prompt='training'")
    # The released code's rule (InternVLChatModel.__init__): the config's key wins, even when empty.
    if hasattr(config, "system_message"):
        message, system_from = str(config.system_message), "config.system_message"
    else:
        message, system_from = default, f"the {name} template's default"
    return ChatFormat("checkpoint", name, message, system_from, template_from, sep=sep, roles=roles,
                      system_template=system_template, close_empty=False)


def prompt_format(model, prm_prompt: str) -> ChatFormat:
    if prm_prompt not in PRM_PROMPTS:
        raise ValueError(f"unknown prm_prompt {prm_prompt!r}; use one of {', '.join(PRM_PROMPTS)}")
    return checkpoint_format(model) if prm_prompt == "checkpoint" else training_format()


def _own_template(model, name: str | None):
    """The template ``name`` from the checkpoint's ``conversation.py``, if its modeling code imports one."""
    module = sys.modules.get(type(model).__module__)
    get_template = getattr(module, "get_conv_template", None)
    if get_template is None or name is None:
        return None
    return get_template(name)
