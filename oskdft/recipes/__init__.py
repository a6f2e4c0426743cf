"""Corpus recipes: each writes one corpus as Kaldi data dirs (an ``egs/<egs>/prepare.py`` calls
it, in stage 0), and the trivial MFCC baseline that says how hard a corpus's trials are."""
