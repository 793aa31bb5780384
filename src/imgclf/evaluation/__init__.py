"""Backend-neutral evaluation: metrics (NumPy/scikit-learn), plots (Matplotlib), HTML report."""
