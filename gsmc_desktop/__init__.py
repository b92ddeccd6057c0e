"""The GSMC desktop application (PySide6 + pyqtgraph): Live, Images and Training tabs.

Qt only: all model work goes through ``gsmc_core``; long work runs in worker threads.
"""
