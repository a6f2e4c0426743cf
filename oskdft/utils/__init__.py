"""Generic helpers (no torch): atomic file writes, Kaldi ark/scp I/O, logging, errors,
registries."""
