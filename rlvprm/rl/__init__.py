"""RL with process rewards: credit assignment (``credit``) and the TRL trainer subclasses built on it."""
