"""lpt_core: Long-tailed Prompt Tuning (Dong et al., "LPT: Long-tailed Prompt Tuning for Image
Classification", ICLR 2023) on timm Vision Transformers, with the baselines it is compared to,
long-tailed and domain-shifted data, and robustness evaluation.

This package is a library: it never imports ``app``, SQLAlchemy, APScheduler or Streamlit.
"""

__version__ = "0.1.0"
