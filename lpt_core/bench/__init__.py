"""Performance benchmarks of the project: CPU suite (``lpt bench cpu``) and H200 suite
(``lpt bench gpu``, ``scripts/gpu_check.sh``).

Measures what LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image Classification",
ICLR 2023) costs relative to a plain ViT forward and to full fine-tuning (FLOPs, wall time,
memory), evaluation throughput against the device's matmul ceiling, corruption generation and
the nightly job's overhead. Modules import torch and the project lazily so the GPU script runs
on a machine with only torch/timm/numpy installed.
"""
