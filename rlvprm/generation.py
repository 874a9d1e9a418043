"""Sampling solutions from a vision-language policy: one interface for MC labelling, Best-of-N and the demo.

A request is a question, its images and optionally a *prefix*: assistant text already written, which
the policy continues (Monte Carlo labelling continues a solution from each step prefix). The policy
prompt is one plain user turn, no system prompt: the images stand where ``<image>`` placeholders
stand in the question (a question without one gets its images first), then the text. That prompt
is defined once, in ``rewards.prompt`` (the likelihood scorers need it too); it is re-exported here.

Two backends share ``sample(requests, num_samples, ...)``:

- :class:`HFSampler`: ``model.generate`` on a transformers model, batched with left padding.
- :class:`VLLMSampler`: vLLM's ``LLM.generate``; an optional extra, imported only when used.

Conventions, the same for both:

- ``Sample.text`` is the newly generated text only, without the stop token and without special
  tokens (so it never carries chat markup into a PRM conversation); with a prefix, the full
  solution is ``prefix + text``. ``token_ids`` are the generated ids without the stop token.
- Sampling uses exactly the temperature and top-p asked for: no top-k and no repetition penalty,
  whatever the checkpoint's ``generation_config`` says (Qwen2-VL ships ``top_k=1``, which would
  make every sample greedy). Temperature 0 is greedy.
- Log-probabilities (``return_logprobs=True``) are the model's own: ``log_softmax`` of the raw
  logits at temperature 1, before temperature and top-p. They are what a teacher-forced pass gives
  (``rlvprm.policy_likelihood``) and what vLLM returns by default (``logprobs_mode="raw_logprobs"``).
- Seeds: the HF sampler seeds every batch from ``(seed, batch index)`` and vLLM every request from
  ``(seed, request index)``, so a batch's samples do not depend on the batches before it.

Left out: beam search, stop strings, and streaming.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from rewards.prompt import IMAGE_PLACEHOLDER, build_prompt_messages, render_prompt  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


class Request(NamedTuple):
    """One prompt to sample from: a question, its images and the assistant text to continue, if any."""

    question: str
    images: Sequence[Image.Image] = ()
    prefix: str | None = None


@dataclass
class Sample:
    """One sampled continuation.

    ``num_tokens`` counts every generated token, the stop token included (what ``max_new_tokens``
    limits); ``token_logprobs`` (when asked for) align with ``token_ids``.
    """

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop": the policy ended its turn; "length": max_new_tokens ran out
    num_tokens: int
    logprob_sum: float | None = None
    token_logprobs: list[float] | None = None


def batch_seed(seed: int, index: int) -> int:
    """A seed for batch (or request) ``index`` that depends only on ``seed`` and ``index``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def check_sampling(num_samples: int, max_new_tokens: int, temperature: float, top_p: float) -> None:
    if num_samples < 1 or max_new_tokens < 1:
        raise ValueError("num_samples and max_new_tokens must be at least 1")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
    if temperature == 0 and num_samples > 1:
        raise ValueError("temperature 0 is greedy decoding, so every sample would be the same: use num_samples=1")


def as_request(r) -> Request:
    return r if isinstance(r, Request) else Request(*r)


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """``<|im_end|>`` (the ChatML end of turn) plus every eos id the tokenizer or checkpoint names."""
    ids = set()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is not None:
        ids.update([eos] if isinstance(eos, int) else eos)
    if not ids:
        raise ValueError("the tokenizer names no end-of-turn token; pass stop_token_ids")
    return sorted(ids)


def cut_at_stop(new_ids: Sequence[int], stop_ids: set[int]) -> tuple[list[int], str, int]:
    """``(kept ids, finish reason, tokens generated)`` for one row of generated ids.

    >>> cut_at_stop([5, 6, 2, 0, 0], {2})
    ([5, 6], 'stop', 3)
    >>> cut_at_stop([5, 6, 7], {2})
    ([5, 6, 7], 'length', 3)
    """
    for i, t in enumerate(new_ids):
        if t in stop_ids:
            return list(new_ids[:i]), "stop", i + 1
    return list(new_ids), "length", len(new_ids)


class HFSampler:
    """Sample with a transformers model and its processor (``rewards.load_vlm``)."""

    def __init__(self, model, processor, stop_ids: Sequence[int] | None = None, progress: bool = True):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.stop_ids = list(stop_ids) if stop_ids else stop_token_ids(self.tokenizer, model.generation_config)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.progress = progress

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        """Left-padded model inputs for a batch of requests (all with images, or none)."""
        requests = [as_request(r) for r in requests]
        texts = [render_prompt(self.processor, r.question, len(r.images), r.prefix) for r in requests]
        with_images = [len(r.images) > 0 for r in requests]
        kwargs = {}
        if any(with_images):
            if not all(with_images):
                raise ValueError("a batch mixes requests with and without images; sample them in separate calls")
            kwargs["images"] = [list(r.images) for r in requests]
        enc = self.processor(text=texts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
        dtype = self.model.dtype
        return {
            k: v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device)
            for k, v in enc.items()
            if isinstance(v, torch.Tensor)
        }

    @torch.no_grad()
    def sample(
        self,
        requests: Sequence[Request | tuple],
        num_samples: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
        return_logprobs: bool = False,
    ) -> list[list[Sample]]:
        """``num_samples`` continuations of every request, in request order.

        ``batch_size`` counts prompts per ``generate`` call; each call holds ``batch_size *
        num_samples`` sequences. With ``return_logprobs`` the raw logits of every step are kept
        until the batch ends (``steps x sequences x vocabulary``): lower ``batch_size`` for large
        vocabularies.
        """
        check_sampling(num_samples, max_new_tokens, temperature, top_p)
        requests = [as_request(r) for r in requests]
        sampling = temperature > 0
        options = dict(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            num_return_sequences=num_samples,
            repetition_penalty=1.0,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=return_logprobs,
        )
        if sampling:
            options.update(temperature=temperature, top_p=top_p, top_k=0)
        was_training = self.model.training
        self.model.eval()
        results: list[list[Sample]] = []
        bar = tqdm(total=len(requests) * num_samples, unit="sample", desc="sampling", disable=not self.progress)
        try:
            for b, start in enumerate(range(0, len(requests), batch_size)):
                batch = requests[start : start + batch_size]
                inputs = self.encode(batch)
                torch.manual_seed(batch_seed(seed, b))
                out = self.model.generate(**inputs, **options)
                results.extend(self._unpack(out, inputs["input_ids"].shape[1], len(batch), num_samples))
                bar.update(len(batch) * num_samples)
        finally:
            bar.close()
            self.model.train(was_training)
        return results

    def _unpack(self, out, prompt_len: int, num_prompts: int, num_samples: int) -> list[list[Sample]]:
        new = out.sequences[:, prompt_len:]  # (B * n, T): rows ordered prompt-major
        logprobs = None
        if out.logits is not None and len(out.logits):
            # (B * n, T): log-probability of each generated token under the raw logits.
            logprobs = torch.stack(
                [
                    torch.log_softmax(step.float(), dim=-1).gather(1, new[:, t : t + 1]).squeeze(1)
                    for t, step in enumerate(out.logits)
                ],
                dim=1,
            ).cpu()
        stop = set(self.stop_ids)
        rows = new.cpu().tolist()
        samples = []
        for r, row in enumerate(rows):
            ids, reason, count = cut_at_stop(row, stop)
            token_lp = logprobs[r, : len(ids)].tolist() if logprobs is not None else None
            samples.append(
                Sample(
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    token_ids=ids,
                    finish_reason=reason,
                    num_tokens=count,
                    logprob_sum=sum(token_lp) if token_lp is not None else None,
                    token_logprobs=token_lp,
                )
            )
        return [samples[i * num_samples : (i + 1) * num_samples] for i in range(num_prompts)]


class VLLMSampler:
    """Sample with vLLM (``pip install 'rlvprm[vllm]'``): same interface as :class:`HFSampler`.

    Prompts are rendered with the checkpoint's processor chat template (:func:`render_prompt`), and
    the images go in as ``multi_modal_data``; vLLM expands the image placeholders itself.
    ``batch_size`` is accepted and ignored: vLLM schedules all requests at once.

    Not tested here: vLLM is not installed on the CPU machines this project is tested on; only the
    error raised without it is.
    """

    def __init__(
        self,
        model_path: str,
        dtype: str = "auto",
        max_images: int = 4,
        stop_ids: Sequence[int] | None = None,
        progress: bool = True,
        trust_remote_code: bool = False,
        **llm_kwargs,
    ):
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "the 'vllm' sampling backend needs vLLM, an optional extra: install it with "
                "pip install 'rlvprm[vllm]' (needs a GPU), or use backend='hf'"
            ) from err
        from rewards.backends.processors import load_processor

        self._vllm = vllm
        self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        self.stop_ids = list(stop_ids) if stop_ids else stop_token_ids(self.tokenizer)
        self.progress = progress
        self.llm = vllm.LLM(
            model=model_path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            limit_mm_per_prompt={"image": max_images},
            **llm_kwargs,
        )

    def sample(
        self,
        requests: Sequence[Request | tuple],
        num_samples: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int | None = None,
        return_logprobs: bool = False,
    ) -> list[list[Sample]]:
        check_sampling(num_samples, max_new_tokens, temperature, top_p)
        requests = [as_request(r) for r in requests]
        prompts, params = [], []
        for i, r in enumerate(requests):
            prompt = {"prompt": render_prompt(self.processor, r.question, len(r.images), r.prefix)}
            if r.images:
                prompt["multi_modal_data"] = {"image": list(r.images)}
            prompts.append(prompt)
            params.append(
                self._vllm.SamplingParams(
                    n=num_samples,
                    temperature=temperature,
                    top_p=top_p if temperature > 0 else 1.0,
                    top_k=-1,
                    repetition_penalty=1.0,
                    max_tokens=max_new_tokens,
                    seed=batch_seed(seed, i),
                    stop_token_ids=self.stop_ids,
                    skip_special_tokens=True,
                    # 0 returns the sampled token's own log-probability and no alternatives.
                    logprobs=0 if return_logprobs else None,
                )
            )
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=self.progress)
        stop = set(self.stop_ids)
        results = []
        for out in outputs:
            samples = []
            for c in out.outputs:
                ids = list(c.token_ids)
                count = len(ids)
                token_lp = None
                if return_logprobs and c.logprobs is not None:
                    token_lp = [c.logprobs[t][tok].logprob for t, tok in enumerate(ids)]
                # vLLM keeps the stop token in token_ids (not in text); drop it as the HF sampler does.
                if ids and ids[-1] in stop:
                    ids = ids[:-1]
                    token_lp = token_lp[:-1] if token_lp is not None else None
                reason = "stop" if c.finish_reason == "stop" else "length"
                samples.append(
                    Sample(
                        text=c.text,
                        token_ids=ids,
                        finish_reason=reason,
                        num_tokens=count,
                        logprob_sum=sum(token_lp) if token_lp is not None else None,
                        token_logprobs=token_lp,
                    )
                )
            results.append(samples)
        return results


def make_sampler(
    backend: str,
    model_path: str,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = "auto",
    trust_remote_code: bool = False,
    **kwargs,
) -> HFSampler | VLLMSampler:
    """A sampler for the policy at ``model_path``: ``backend`` is ``hf`` or ``vllm``.

    Extra keyword arguments go to the sampler (``progress``, ``stop_ids``; for vLLM also ``LLM``
    arguments such as ``gpu_memory_utilization`` or ``tensor_parallel_size``).
    """
    if backend == "hf":
        from rewards.loading import load_vlm
        from rewards.prm import resolve_device, resolve_dtype

        dev = resolve_device(device)
        model, processor = load_vlm(
            model_path, dtype=resolve_dtype(dtype, dev), device=dev, trust_remote_code=trust_remote_code
        )
        return HFSampler(model, processor, **kwargs)
    if backend == "vllm":
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).removeprefix("torch.")
        return VLLMSampler(model_path, dtype=dtype or "auto", trust_remote_code=trust_remote_code, **kwargs)
    raise ValueError(f"unknown sampling backend {backend!r}; use 'hf' or 'vllm'")
