"""Serving: a trained or exported model that embeds audio and verifies pairs of utterances, as
the ``oskdft verify``, ``embed`` and ``info`` commands run it; an ONNX model needs no torch."""
