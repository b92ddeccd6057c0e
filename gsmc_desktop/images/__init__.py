"""The Images tab: faces, expressions and per-class attention maps of still images."""
