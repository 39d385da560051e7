"""Experiment read-out: bootstrap intervals over prompts (stats) and the markdown + PNG
report built from the experiment's summary dict (report)."""
