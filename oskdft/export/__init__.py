"""Stage 6: a trained system exported for serving (ONNX, optionally int8 and TorchScript),
checked against PyTorch."""
