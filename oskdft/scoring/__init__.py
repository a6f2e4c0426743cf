"""Scoring back ends and metrics (stage 5). numpy/scipy only: nothing here imports torch."""
