"""Generic helpers: atomic file writes, Kaldi ark/scp I/O, logging, seeding, registries."""
