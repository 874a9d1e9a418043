"""PPO's critic: a copy of the policy's backbone with a scalar value head, and its own optimizer.

- :class:`ValueModel`: a vision-language backbone without its LM head (``AutoModel``; for Qwen2-VL
  that is ``Qwen2VLModel``) and a linear head giving one value per position. It reads the policy's
  token ids and images, so the model it starts from must share the policy's tokenizer and image
  processor (the policy itself, by default).
- :func:`load_critic` / :meth:`ValueModel.save`: a critic folder is the backbone's
  ``save_pretrained`` folder plus ``value_head.safetensors``; a folder without that file (a policy)
  starts a new head at zero, so every value starts at 0.
- :class:`CriticOptimizer`: the critic's AdamW with its own learning rate, gradient clipping and
  accumulation; in a multi-process run the gradients are averaged over processes before each step
  (explicitly, so parameters some process did not use, such as the vision tower on text-only
  prompts, cannot stall the reduction); under DeepSpeed the critic is a DeepSpeed engine of its
  own, built from the policy's DeepSpeed config, and saves DeepSpeed checkpoints (its folder's
  ``zero_to_fp32.py`` converts one to plain weights).

A critic may start from another model than the policy, e.g. the PRM's backbone, when that model
shares the policy's tokenizer (:func:`check_same_tokenizer`).

Left out: a value head on a LoRA-adapted policy (one model for both; the critic here is always a
separate copy), a critic from a model with another tokenizer, and learning-rate schedules for the
critic (constant).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

HEAD_FILE = "value_head.safetensors"
OPTIMIZER_FILE = "critic_optimizer.pt"


class ValueModel(nn.Module):
    """``backbone`` (a transformers base model returning ``last_hidden_state``) with a scalar head."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(dtype=next(backbone.parameters()).dtype)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, **multimodal) -> Tensor:
        """Values (B, L): entry j reads the hidden state at position j, i.e. the state after token j.

        ``multimodal`` carries the policy's image inputs (``pixel_values``, ``image_grid_thw``, ...).
        """
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **multimodal)
        hidden = out.last_hidden_state
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)

    def save(self, folder: str | Path) -> Path:
        """Write the backbone (``save_pretrained``) and the head to ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.value_head.state_dict().items()}, str(folder / HEAD_FILE))
        return folder

    def load_head(self, folder: str | Path) -> None:
        from safetensors.torch import load_file

        self.value_head.load_state_dict(load_file(str(Path(folder) / HEAD_FILE)))


def load_critic(path: str | Path, dtype: torch.dtype | str = "auto", trust_remote_code: bool = False) -> ValueModel:
    """A critic from a critic folder (backbone and head) or from a policy folder or hub id (new head at 0)."""
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
    critic = ValueModel(backbone)
    if (Path(path) / HEAD_FILE).exists():
        critic.load_head(path)
    return critic


def check_same_tokenizer(source: str | Path, tokenizer, trust_remote_code: bool = False) -> None:
    """Refuse a critic whose tokenizer is not the policy's: it reads the policy's token ids.

    ``tokenizer``: the policy's. The vocabularies (token -> id, added tokens included) must be equal.
    """
    from transformers import AutoTokenizer

    folder = Path(source)
    if folder.is_dir() and not any((folder / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        log.warning("%s holds no tokenizer (a saved critic?): cannot check that it shares the policy's", source)
        return
    theirs = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code).get_vocab()
    ours = tokenizer.get_vocab()
    if theirs != ours:
        differ = sorted({t for t in theirs.keys() | ours.keys() if theirs.get(t) != ours.get(t)})
        raise ValueError(
            f"the critic's model {source} does not share the policy's tokenizer ({len(differ)} tokens differ, e.g. "
            f"{differ[:5]}); the critic reads the policy's token ids, so start it from a model with the same tokenizer"
        )


class CriticOptimizer:
    """Trains a :class:`ValueModel` beside the policy: ``backward`` on every micro-batch, a step every
    ``accumulation`` micro-batches (the policy's gradient accumulation, so both step together).

    ``module`` is what to call for values: the critic, or its DeepSpeed engine.
    """

    def __init__(
        self,
        critic: ValueModel,
        accelerator,
        learning_rate: float,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = 1.0,
        accumulation: int = 1,
        deepspeed_config: dict | None = None,
    ):
        self.critic = critic
        self.accelerator = accelerator
        self.max_grad_norm = max_grad_norm
        self.accumulation = accumulation
        self.micro_batches = 0
        critic.to(accelerator.device)
        critic.train()
        optimizer = torch.optim.AdamW(
            [p for p in critic.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay
        )
        self.engine = None
        if deepspeed_config is not None:
            import deepspeed

            config = copy.deepcopy(deepspeed_config)
            config.pop("optimizer", None)
            config.pop("scheduler", None)
            config["gradient_clipping"] = max_grad_norm or 0.0
            self.engine, optimizer, _, _ = deepspeed.initialize(model=critic, optimizer=optimizer, config=config)
        self.optimizer = optimizer

    @property
    def module(self):
        return self.engine if self.engine is not None else self.critic

    def backward(self, loss: Tensor) -> bool:
        """Accumulate the gradient of ``loss`` (the micro-batch's loss, not yet divided by the
        accumulation); step when the window is full. Returns whether it stepped."""
        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()  # DeepSpeed counts the accumulation itself
            return self.engine.is_gradient_accumulation_boundary()
        (loss / self.accumulation).backward()
        self.micro_batches += 1
        if self.micro_batches % self.accumulation:
            return False
        params = [p for p in self.critic.parameters() if p.requires_grad]
        if self.accelerator.num_processes > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad = self.accelerator.reduce(p.grad, reduction="mean")
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def save(self, folder: str | Path) -> None:
        """The critic and its optimizer state into ``folder`` (a checkpoint's ``critic/``)."""
        folder = Path(folder)
        if self.engine is not None:
            self.engine.save_checkpoint(str(folder))
            return
        if self.accelerator.is_main_process:
            self.critic.save(folder)
            torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)

    def load(self, folder: str | Path) -> None:
        """Restore what :meth:`save` wrote (in place: the optimizer keeps pointing at these parameters)."""
        folder = Path(folder)
        if self.engine is not None:
            path, _ = self.engine.load_checkpoint(str(folder))
            if path is None:
                raise FileNotFoundError(f"no DeepSpeed checkpoint of the critic in {folder}")
        else:
            loaded = load_critic(folder, dtype=next(self.critic.parameters()).dtype)  # backbone and head
            self.critic.load_state_dict(loaded.state_dict())
            state = torch.load(folder / OPTIMIZER_FILE, map_location=self.accelerator.device, weights_only=True)
            self.optimizer.load_state_dict(state)
        log.info("critic and its optimizer restored from %s", folder)
