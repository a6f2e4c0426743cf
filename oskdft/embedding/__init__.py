"""Embedding extraction (stage 4) and loading of trained models (exp/<system>/final)."""
