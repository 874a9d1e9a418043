"""Test time against train time: accuracy of a PRM's uses against counted compute per prompt.

``run_compare(CompareConfig(...))`` is the whole pipeline (``rlvprm compare``; ``run.py`` says what
it does, ``compute.py`` how compute is counted, ``training.py`` how training cost is read).
"""

from rlvprm.compare.config import CompareConfig
from rlvprm.compare.run import run_compare

__all__ = ["CompareConfig", "run_compare"]
