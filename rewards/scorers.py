"""``load_scorer``: any trained process scorer from a folder or hub id, behind the ``score_groups`` interface.

What a folder or hub repo holds decides the scorer (each side file found with
``rewards.scorer_files.find_scorer_file``, so a hub id behaves like its folder):

- ``stacked_scorer.json`` (``rlvprm train-prm --kind stacked``): ``rewards.stacked.StackedScorer``,
  its components loaded by this same function (a component is anything ``load_scorer`` loads);
- ``implicit_prm.json`` (``--kind implicit``): ``rewards.likelihood.ImplicitPRM``;
- anything else: ``rewards.prm.ProcessRewardModel`` (``--kind prm``, VisualPRM-8B), with its
  ``likelihood_feature.json`` when it has one;
- ``likelihood:POLICY``: the training-free ``rewards.likelihood.PolicyLikelihoodScorer`` of that
  policy.

Loading lives here, apart from the scorers, so that ``prm``, ``likelihood`` and ``stacked`` import
one another in one direction only.
"""

from __future__ import annotations

import json

from rewards.likelihood import IMPLICIT_CONFIG, ImplicitPRM, PolicyLikelihoodScorer
from rewards.prm import ProcessRewardModel
from rewards.scorer_files import ScorerFileError, find_scorer_file, is_local
from rewards.stacked import STACKED_CONFIG, StackedScorer

LIKELIHOOD_PREFIX = "likelihood:"


def load_scorer(path_or_id: str, *, orm: bool = False, revision: str | None = None, token: str | bool | None = None,
                **kwargs):
    """The scorer at ``path_or_id`` (module docstring), loaded as its kind requires.

    ``revision`` and ``token`` apply to a hub id as in ``from_pretrained``. For an implicit PRM,
    a stacked scorer or a policy likelihood, ``backend`` does not apply and ``max_length`` must be
    unset (they score in the policy prompt format or through their components); ``trust_remote_code``,
    ``dtype``, ``device``, ``max_steps``, ``aggregation``, ``batch_size`` pass through.
    ``orm=True`` scores each whole response as one step (not for a stacked scorer).
    ``prm_prompt`` (``checkpoint`` or ``training``, ``rewards.backends.internvl_prompt``) applies to
    a PRM and to the PRM components of a stacked scorer; implicit PRMs and policy likelihoods score
    in the policy's own prompt format and ignore it. :func:`prompt_info` says what was used.
    """
    hub = {"revision": revision, "token": token}
    if path_or_id.startswith(LIKELIHOOD_PREFIX):
        _drop_prm_options(kwargs, "the policy-likelihood scorer")
        return PolicyLikelihoodScorer.from_pretrained(path_or_id[len(LIKELIHOOD_PREFIX):], orm=orm, **hub, **kwargs)

    if find_scorer_file(path_or_id, STACKED_CONFIG, **hub) is not None:
        prm_prompt = kwargs.get("prm_prompt", "checkpoint")
        _drop_prm_options(kwargs, f"{path_or_id} is a stacked scorer, which")
        if orm:
            raise ValueError(f"{path_or_id} is a stacked scorer, which has no ORM mode")
        return load_stacked(path_or_id, prm_prompt=prm_prompt, **hub, **kwargs)
    if find_scorer_file(path_or_id, IMPLICIT_CONFIG, **hub) is not None:
        _drop_prm_options(kwargs, f"{path_or_id} is an implicit PRM, which")
        return ImplicitPRM.from_pretrained(path_or_id, orm=orm, **hub, **kwargs)
    if not is_local(path_or_id):
        # A hub id whose files cannot be reached would otherwise fail deep inside transformers
        # with a message about config.json only; name every file that would have told the kind.
        try:
            find_scorer_file(path_or_id, "config.json", required=True, needed_for="a process reward model", **hub)
        except ScorerFileError as err:
            raise ScorerFileError(f"{path_or_id}: found none of {STACKED_CONFIG}, {IMPLICIT_CONFIG} or config.json "
                                  f"({err})") from err
    return ProcessRewardModel.from_pretrained(path_or_id, orm=orm, **hub, **kwargs)


def _drop_prm_options(kwargs: dict, what: str) -> None:
    """Remove the options only a ``ProcessRewardModel`` has; a set ``max_length`` is an error."""
    kwargs.pop("backend", None)
    kwargs.pop("prm_prompt", None)
    if kwargs.pop("max_length", None) is not None:
        raise ValueError(f"{what} has no max_length option; leave it unset")


def load_stacked(path_or_id: str, *, device="auto", dtype="auto", trust_remote_code: bool = False, batch_size: int = 8,
                 max_steps: int | None = None, aggregation: str | None = None, revision: str | None = None,
                 token: str | bool | None = None, prm_prompt: str = "checkpoint") -> StackedScorer:
    """The stacked scorer ``rlvprm train-prm --kind stacked`` wrote (its ``stacked_scorer.json``)."""
    path = find_scorer_file(path_or_id, STACKED_CONFIG, required=True, revision=revision, token=token,
                            needed_for="a stacked scorer")
    info = json.loads(path.read_text())
    comps = [load_component(c, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                            batch_size=batch_size, max_steps=max_steps, prm_prompt=prm_prompt) for c in info["components"]]
    return StackedScorer(comps, info["weights"], info["bias"], aggregation or info.get("aggregation", "min"),
                         names=[c["name"] for c in info["components"]])


def load_component(spec: dict, **kwargs):
    """One component of a stacked scorer from its spec: ``{"name", "kind": "scorer" | "likelihood", "path", ...}``.

    ``scorer``: anything :func:`load_scorer` loads (its own step scores, unaggregated);
    ``likelihood``: the policy at ``path`` as a ``PolicyLikelihoodScorer`` with ``score`` (default
    ``step_prob``) and ``running_min`` (default true). A component's ``path`` is its own folder or
    hub id (with an optional ``revision``), independent of where the stacked scorer came from.
    """
    kind = spec.get("kind")
    hub = {"revision": spec.get("revision")}
    if kind == "likelihood":
        kwargs.pop("prm_prompt", None)
        return PolicyLikelihoodScorer.from_pretrained(
            spec["path"], kind=spec.get("score", "step_prob"), running_min=spec.get("running_min", True),
            device=kwargs["device"], dtype=kwargs["dtype"], trust_remote_code=kwargs["trust_remote_code"],
            batch_size=kwargs["batch_size"], max_steps=kwargs["max_steps"], **hub,
        )
    if kind == "scorer":
        return load_scorer(spec["path"], **hub, **kwargs)
    raise ValueError(f"unknown component kind {kind!r} in {STACKED_CONFIG}; use 'scorer' or 'likelihood'")


def prompt_info(scorer) -> dict:
    """The prompt a loaded scorer writes, for a scores file's metadata.

    A PRM: its ``prompt_info`` (the ``prm_prompt`` choice, template, system message source); a
    stacked scorer: one entry per component; an implicit PRM or a policy likelihood: the policy's
    own prompt, to which ``prm_prompt`` does not apply.
    """
    if isinstance(scorer, StackedScorer):
        return {"stacked": {name: prompt_info(c) for name, c in zip(scorer.names, scorer.components)}}
    if isinstance(scorer, ProcessRewardModel):
        return scorer.prompt_info
    return {"prm_prompt": None, "template": "the policy's own prompt", "template_from": type(scorer).__name__}
