"""Dataset readers, label noise and transforms."""
