"""RL with process rewards: GRPO whose advantages are per token, built from step scores, and PPO.

- ``credit``: credit assignment as pure tensor functions (outcome, prm_sequence, process, min_form, ps_grpo).
- ``step_tokens``: steps (character spans) onto the policy's completion tokens.
- ``scorers``: where step scores come from (a PRM, or the visual-arith world's exact checker).
- ``rollouts``: one process's completions scored and packed into tensors.
- ``batch_credit``: credit over a generation batch whose groups span processes, and its metrics.
- ``trainer``: the ``trl.GRPOTrainer`` subclass (the seam), ``data``: prompt sets as datasets,
  ``heldout``: held-out accuracy while training. The command is ``rlvprm grpo``.
- ``ppo_credit``: PPO's per-token rewards, GAE, whitening and value loss (pure tensor functions);
  ``critic``: the value model and its optimizer; ``ppo_trainer``: PPO on the same seam. The command
  is ``rlvprm ppo``.
"""
