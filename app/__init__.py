"""The lpt-robustness service: SQL store, ingest, nightly evaluation job, scheduler, reports and
deployment gate around LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image Classification",
ICLR 2023).

``app`` drives :mod:`lpt_core`; it owns all SQL (``app.db``) and scheduling. Heavy libraries
(torch, timm, great_expectations) are imported lazily, only when there is work to do.
"""
