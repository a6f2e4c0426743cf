"""Losses: AAM-softmax and knowledge-distillation losses. No file I/O."""
