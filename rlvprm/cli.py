"""`rlvprm COMMAND --config RECIPE.yaml [--key value ...]`.

Commands are plain functions in one explicit table; each takes its typed config (``rlvprm.config``).
"""

from __future__ import annotations

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
    "label": ("rlvprm.commands.label", "LabelConfig", "Monte Carlo step labels (VisualPRM400K-v1.1-Raw); --convert, --merge"),
    "bon": ("rlvprm.commands.bon", "BonConfig", "Best-of-N with a PRM: accuracy of every selection strategy against N"),
    "train-prm": ("rlvprm.commands.train_prm", "TrainPRMConfig", "train a VisualPRM-style PRM (step labels) or an implicit PRM (outcome labels)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rlvprm COMMAND [--config RECIPE.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines += ["", "`rlvprm COMMAND --help` lists every option of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
    try:
        configs = parse([config_cls, *extra], rest, prog=f"rlvprm {name}", description=module.__doc__ or desc, command=name)
    except ConfigError as err:
        print(f"rlvprm {name}: {err}", file=sys.stderr)
        return 2
    module.main(*configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
