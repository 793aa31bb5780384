"""Training backends other than PyTorch (PyTorch's code lives at the package top level)."""
