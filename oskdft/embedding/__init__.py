"""Embedding extraction (stage 4): sharded jobs, their merge, and the crops and batches."""
