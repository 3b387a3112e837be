"""Data: dataset sources, long-tailed construction, prepared storage, samplers, transforms, shift batches."""
