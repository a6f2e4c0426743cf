"""Scoring back ends and metrics (stage 5). numpy/scipy only: nothing here imports torch.

- ``trials``: trial lists, score files, Kaldi tables (utt2spk, utt2dur)
- ``embeddings``: embedding tables as loaded from stage 4's scp files
- ``backends``: the ``BACKENDS`` registry (cosine, cosine_mean, plda, asnorm, fused), built on
  ``lda``, ``plda`` and ``ops`` (vectorised per-speaker sums and row-wise dot products)
- ``metrics``: EER, minDCF, Cllr, min Cllr, DET points
- ``calibration``: scores -> log-likelihood ratios, fitted on the validation trials
- ``plots``, ``report``: DET/histogram PNGs and the results table
- ``pipeline``: :func:`~oskdft.scoring.pipeline.score_system`, stage 5 for one system
"""
