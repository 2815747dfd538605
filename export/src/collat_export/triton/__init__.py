"""Files copied verbatim into Triton model directories (they run inside tritonserver, not here)."""
