"""The Live tab: camera or video through the frame pipeline, with overlays, charts, recording."""
