"""DVC stage entry points: one module per stage of dvc.yaml, run as
``python -m lpt_core.pipeline.<stage> --params params.yaml <paths from dvc.yaml>``.

Each module reads only its own params.yaml section into a frozen dataclass and receives every
path as an argument, so reading dvc.yaml tells the whole data flow.
"""
