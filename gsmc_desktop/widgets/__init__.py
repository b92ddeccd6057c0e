"""Widgets shared by the tabs: frame view, probability bar chart, probability timeline."""
