"""The scorer: times baseline, reference and submission where the submission cannot reach."""
