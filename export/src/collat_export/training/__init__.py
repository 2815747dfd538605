"""Training on the digital phantom (``collat-train``): data, losses, loop, evaluation, model cards."""
