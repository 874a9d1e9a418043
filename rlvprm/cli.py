"""`rlvprm COMMAND --config RECIPE.yaml [--key value ...]`.

Commands are plain functions in one explicit table; each takes its typed config (``rlvprm.config``).

Every error reaches the user as one line, ``rlvprm COMMAND: reason`` (the reason names the file, line
or record where there is one), with exit status 1 and no traceback. ``rlvprm --debug COMMAND ...``
(or ``--debug`` anywhere when the command has no option of that name, or ``RLVPRM_DEBUG=1``) lets the
exception through with its traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys

from rlvprm.config import ConfigError, parse

# name: (module, config class, one-line description)
COMMANDS = {
    "tiny-model": ("rlvprm.commands.tiny_model", "TinyModelConfig", "write a tiny VLM of a real architecture to disk"),
    "demo": ("rlvprm.commands.demo", "DemoConfig", "the whole pipeline on the embedded visual-arith world, with a report"),
    "score": ("rlvprm.commands.score", "ScoreConfig", "per-step PRM scores for every solution in a jsonl file"),
    "eval-vpb": ("rlvprm.commands.eval_vpb", "EvalVPBConfig", "VisualProcessBench step F1 of a PRM or of given step scores"),
    "grpo": ("rlvprm.commands.grpo", "DenseGRPOConfig", "GRPO of a VLM policy with dense per-step rewards from a PRM (or the oracle)"),
    "ppo": ("rlvprm.commands.ppo", "DensePPOConfig", "PPO of a VLM policy with PRM step rewards, GAE and a critic"),
    "label": ("rlvprm.commands.label", "LabelConfig", "Monte Carlo step labels (VisualPRM400K-v1.1-Raw); --convert, --merge"),
    "bon": ("rlvprm.commands.bon", "BonConfig", "Best-of-N with a PRM: accuracy of every selection strategy against N"),
    "compare": ("rlvprm.commands.compare", "CompareConfig", "test-time (Best-of-N) against train-time (RL) use of a PRM, "
                "accuracy against counted compute"),
    "train-prm": ("rlvprm.commands.train_prm", "TrainPRMConfig", "train a VisualPRM-style PRM (step labels) or an implicit PRM (outcome labels)"),
}

# Errors whose message is written for the user already; anything else also shows its type, since
# "KeyError: 'id'" says more than "'id'".
_SELF_EXPLAINED = ("ConfigError", "RecordError", "InputError", "ConversationError", "ImageError", "RunMismatch")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rlvprm [--debug] COMMAND [--config RECIPE.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines += ["", "`rlvprm COMMAND --help` lists every option of a command.",
              "Errors print one line; --debug (or RLVPRM_DEBUG=1) shows the traceback."]
    return "\n".join(lines)


def error_line(command: str, err: BaseException) -> str:
    """The one line an error shows: ``rlvprm COMMAND: reason``."""
    msg = " ".join(str(err).split()) if str(err).strip() else ""
    kind = type(err).__name__
    if kind not in _SELF_EXPLAINED or not msg:
        msg = f"{kind}: {msg}" if msg else kind
    return f"rlvprm {command}: {msg}"


def parse_command(name: str, argv: list[str]) -> tuple[object, list]:
    """The command's module and its configs parsed from ``argv`` (``--config RECIPE`` and overrides).

    ``rlvprm demo`` runs other commands' recipes in-process through this, so a stage there is the
    command a user would launch, with the same parsing and checks.
    """
    module_name, config_name, desc = COMMANDS[name]
    module = importlib.import_module(module_name)
    config_cls = getattr(module, config_name)
    configs = parse([config_cls, *getattr(module, "EXTRA_CONFIGS", ())], argv, prog=f"rlvprm {name}",
                    description=module.__doc__ or desc, command=name, ranges=getattr(module, "EXTRA_RANGES", None))
    return module, configs


def run_command(name: str, argv: list[str]):
    """Run ``rlvprm NAME ARGV...`` in this process and return what the command's ``main`` returns."""
    module, configs = parse_command(name, argv)
    return module.main(*configs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("RLVPRM_DEBUG", "").lower() in ("1", "true", "yes", "on")
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rlvprm: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=os.environ.get("RLVPRM_LOG", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, config_name, desc = COMMANDS[name]
    module = importlib.import_module(module_name)
    config_cls = getattr(module, config_name)
    extra = getattr(module, "EXTRA_CONFIGS", ())
    # TRL's TrainingArguments has an option named `debug`; there only the leading form applies.
    if "--debug" in rest and not any(f.name == "debug" for dc in (config_cls, *extra) for f in dataclasses.fields(dc)):
        debug, rest = True, [a for a in rest if a != "--debug"]
    try:
        module.main(*parse_command(name, rest)[1])
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"rlvprm {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place errors become a line and an exit status
        if debug:
            raise
        print(error_line(name, err) + "  (--debug shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
