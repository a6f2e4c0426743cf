"""Data: Kaldi data dirs, lhotse manifests, audio reading, windows, augmentation, loading."""
