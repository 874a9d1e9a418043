"""Monte Carlo step labels (VisualPRM400K's pipeline) and the step-label data formats.

``mc.py`` (sampling and scoring), ``formats.py`` (VisualPRM400K-v1.1-Raw and conversation records,
reading either), ``shards.py`` (data-parallel shards and their merge), ``quality.py`` (MC labels
against the visual-arith world's exact labels; import it from there, it also runs as
``python -m rlvprm.labeling.quality``). ``rlvprm label`` (``rlvprm/commands/label.py``) runs them.
"""

from rlvprm.labeling.formats import (
    PRMRecord,
    conversation_record,
    parse_prm_row,
    raw_record,
    read_prm_records,
    rollout_id,
    split_rollout_id,
    step_label,
)
from rlvprm.labeling.mc import MCSettings, PromptLabels, Rollout, StepScore, call_seed, label_prompt, step_prefix
from rlvprm.labeling.shards import merge_shards, shard_path, shard_slice

__all__ = [
    "MCSettings",
    "PRMRecord",
    "PromptLabels",
    "Rollout",
    "StepScore",
    "call_seed",
    "conversation_record",
    "label_prompt",
    "merge_shards",
    "parse_prm_row",
    "raw_record",
    "read_prm_records",
    "rollout_id",
    "shard_path",
    "shard_slice",
    "split_rollout_id",
    "step_label",
    "step_prefix",
]
