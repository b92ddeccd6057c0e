"""Training: the settings, methods and losses, the loop, evaluation (plain and under shifts),
cross-validation, the run folder, and the dataset readers (``data``)."""
