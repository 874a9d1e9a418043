"""PRM training (``rlvprm train-prm``), read in this order:

- ``data``: step-labelled records (VisualPRM400K Raw or conversations) and outcome-labelled records,
  bad-input checks, the length check.
- ``collate``: batches built by the scorers' own encoders, targets at the scorers' read positions.
- ``losses``: the label loss (full vocabulary or two-way) and PRIME's implicit outcome loss.
- ``model``: loading from ``--init``, LoRA, freezing the vision tower, saving a loadable folder.
- ``evaluation``: VisualProcessBench metrics of any scorer, flat for logging.
- ``trainer``: ``PRMTrainer``, transformers' Trainer with those losses and that evaluation.

The command itself (configs, recipes, output files) is ``rlvprm.commands.train_prm``.
"""
