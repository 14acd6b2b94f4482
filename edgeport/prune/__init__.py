"""Pruning (``--prune``): unstructured magnitude pruning of ONNX weights (any source) and
structured channel pruning of PyTorch modules, with per-layer ratios from sensitivity under
the accuracy budget and optional recovery by distillation (``--finetune_steps``)."""
