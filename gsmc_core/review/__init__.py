"""Label review: ranking the training faces likely mislabelled (audit, confident learning),
the append-only log of a person's decisions, and the cleaned labels in each dataset's format."""
