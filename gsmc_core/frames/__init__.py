"""The frame path: sources, face detection and tracking, the predictor and its ONNX / int8
graphs, the pipeline, overlays, per-face results and the speed benchmark."""
