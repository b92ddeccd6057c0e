"""GSMC core: the network, training recipe, data readers and the frame pipeline (no Qt)."""

__version__ = "0.1.0"
