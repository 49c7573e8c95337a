"""Tool executors (calculator, equation solver, search, text-to-image) and the registry that runs MOSS commands."""
