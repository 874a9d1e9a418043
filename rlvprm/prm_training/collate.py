"""Batches for PRM training, built by the code the scorers use, so targets sit where scores are read.

:class:`StepLabelCollator` (``--kind prm``): every record becomes its conversation through
``rewards.conversation.build_conversation`` and is encoded by ``rewards.backends.hf.HFBackend.encode``,
the encoder ``ProcessRewardModel`` scores with. ``encode`` returns the *read positions* (the token
that predicts each assistant placeholder); the step label's token id (``+`` or ``-``) is the target
at exactly those positions and nowhere else. With the default ``labels_in_input=False`` every
assistant turn holds the placeholder ``+``, so the training input ids are the scoring input ids
(DESIGN.md section 7); ``labels_in_input=True`` writes the labels there, as the released VisualPRM
checkpoints were trained.

Optionally (``lm_steps=True``) the batch also carries language-model targets on the tokens of the
user turns up to the first ``-`` step: the question after the last image token and every step
judged correct, with their chat markup. The auxiliary loss on them makes the PRM keep predicting
what it reads, an attempt to break the tiny-model plateau of DESIGN.md section 7.

:class:`OutcomeCollator` (``--kind implicit``): rows in the *policy* prompt format, encoded by
``rewards.likelihood.encode_solutions`` (what ``ImplicitPRM`` scores with), with the solution mask
and the outcome labels.

With ``feature_spans=True`` (a PRM with a likelihood feature, ``rewards.likelihood_feature``) the
batch carries ``step_spans`` ``(B, S, 2)``: ``[start, end)`` of each step's text tokens, found by the
scorer's own ``HFBackend.step_spans`` (``-1`` for padded steps).

With ``bag_steps=True`` the batch carries ``step_index`` ``(B, L)``: which step's user turn each
token belongs to (-1 elsewhere), from which the trainer builds a bag-of-tokens target at each read
position (the auxiliary target of ``--aux-bag-weight``).

Batch keys besides the model inputs: ``step_targets`` ``(B, L)`` (label token ids at read positions,
-100 elsewhere), ``lm_targets`` ``(B, L)`` (the next token's id where an LM target applies, -100
elsewhere), ``step_index`` ``(B, L)``, ``step_spans`` ``(B, S, 2)``, ``solution_mask`` ``(B, T)`` and ``outcomes`` ``(B,)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rewards.backends.hf import HFBackend
from rewards.conversation import GOOD, Conversation, build_conversation
from rewards.likelihood import encode_solutions
from rlvprm.prm_training.data import Example

IGNORE = -100


class StepLabelCollator:
    """Step-labelled examples into model inputs and ``step_targets`` (and ``lm_targets``)."""

    def __init__(self, processor, labels_in_input: bool = False, lm_steps: bool = False, bag_steps: bool = False,
                 feature_spans: bool = False):
        # encode() needs only the processor: no model is attached to this backend.
        self.backend = HFBackend(None, processor)
        self.processor = processor
        self.labels_in_input = labels_in_input
        self.lm_steps = lm_steps
        self.bag_steps = bag_steps
        self.feature_spans = feature_spans
        self.good_id, self.bad_id = self.backend.good_id, self.backend.bad_id
        tok = processor.tokenizer
        image_token = getattr(processor, "image_token", None)
        self.image_token_id = tok.convert_tokens_to_ids(image_token) if image_token else None

    def conversation(self, example: Example) -> Conversation:
        rec = example.record
        return build_conversation(rec.question, rec.steps, num_images=len(example.images), labels=rec.labels,
                                  labels_in_input=self.labels_in_input)

    def length(self, example: Example) -> int:
        """Tokens of the example's conversation, images included (for ``check_lengths``)."""
        return self.backend.encode([self.conversation(example)], [example.images]).lengths[0]

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        convs = [self.conversation(ex) for ex in examples]
        batch = self.backend.encode(convs, [ex.images for ex in examples], step_spans=self.feature_spans)
        ids = batch.inputs["input_ids"]
        targets = torch.full_like(ids, IGNORE)
        for i, (conv, positions) in enumerate(zip(convs, batch.read_positions)):
            # encode() found exactly one read position per step (it raises otherwise), in order.
            for p, label in zip(positions, conv.labels):
                targets[i, p] = self.good_id if label == GOOD else self.bad_id
        out = {k: v for k, v in batch.inputs.items() if isinstance(v, torch.Tensor)}
        out["step_targets"] = targets
        if self.lm_steps:
            out["lm_targets"] = self._lm_targets(ids, batch.read_positions, convs)
        if self.bag_steps:
            out["step_index"] = self._step_index(ids, batch.read_positions)
        if self.feature_spans:
            spans = torch.full((len(convs), max(c.num_steps for c in convs), 2), -1, dtype=torch.long)
            for i, row in enumerate(batch.step_spans):
                spans[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            out["step_spans"] = spans
        return out

    def _step_spans(self, row: list[int], positions: list[int]) -> list[range]:
        """Token positions of each step's user turn (with its chat markup).

        Step ``k``'s user turn lies between the placeholder of step ``k - 1`` and the assistant
        header before step ``k``'s placeholder; the first turn starts after the last image token.
        """
        header = len(self.backend.header_ids)
        start = 0
        if self.image_token_id is not None and self.image_token_id in row[: positions[0]]:
            start = max(j for j in range(positions[0]) if row[j] == self.image_token_id) + 1
        return [range(start if k == 0 else positions[k - 1] + 2, positions[k] - header + 1) for k in range(len(positions))]

    def _step_index(self, ids: torch.Tensor, read_positions: list[list[int]]) -> torch.Tensor:
        """``(B, L)``: the index of the step whose user turn holds each token, -1 elsewhere."""
        index = torch.full_like(ids, -1)
        for i, positions in enumerate(read_positions):
            for k, span in enumerate(self._step_spans(ids[i].tolist(), positions)):
                index[i, span.start : span.stop] = k
        return index

    def _lm_targets(self, ids: torch.Tensor, read_positions: list[list[int]], convs: list[Conversation]) -> torch.Tensor:
        """Next-token targets on the user turns before the first ``-`` step (see the module docstring)."""
        lm = torch.full_like(ids, IGNORE)
        for i, (positions, conv) in enumerate(zip(read_positions, convs)):
            row = ids[i].tolist()
            good = len(conv.labels) if "-" not in conv.labels else conv.labels.index("-")
            for span in self._step_spans(row, positions)[:good]:
                for t in range(max(span.start, 1), span.stop):
                    lm[i, t - 1] = row[t]  # position t - 1 predicts token t
        return lm


class OutcomeCollator:
    """Outcome-labelled examples into policy inputs, ``solution_mask`` and ``outcomes``."""

    def __init__(self, processor):
        self.processor = processor

    def length(self, example: Example) -> int:
        rec = example.record
        enc = encode_solutions(self.processor, [(rec.question, example.images, rec.solution)])
        return int(enc.inputs["attention_mask"].sum())

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        enc = encode_solutions(self.processor, [(ex.record.question, ex.images, ex.record.solution) for ex in examples])
        out = dict(enc.inputs)
        out["solution_mask"] = enc.solution_mask()
        out["outcomes"] = torch.tensor([float(ex.record.outcome) for ex in examples])
        return out
