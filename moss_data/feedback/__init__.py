"""AI feedback: judge rubric, candidates, reward model, quality tags and preference pairs."""
