"""Keras 3 backend: the only place that imports keras. Importing models registers them."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# TensorFlow loaded before PyTorch makes a later `import torchvision.models` crash the process
# (segmentation fault, seen with tensorflow-cpu 2.21 and torch 2.14.1): load PyTorch's side first.
import torch  # noqa: E402, F401
import torchvision.models  # noqa: E402, F401
