"""``lpt info``: trainable and stored parameter counts per method and phase (no weights needed)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand to the ``lpt`` parser."""
    p = subparsers.add_parser("info", help="parameter counts per method and phase for a timm ViT")
    p.add_argument("--backbone", required=True, help="timm model name, e.g. vit_base_patch16_224")
    p.add_argument("--num-classes", type=int, required=True, help="number of classes of the head")
    p.add_argument("--img-size", type=int, default=None, help="input size if not the model's default")
    p.add_argument("--group-start", type=int, default=None, help="K: blocks before group prompts (default depth//2)")
    p.add_argument("--flops", action="store_true", help="also count inference FLOPs (plain, phase 1, LPT)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the parameter report (and optionally the FLOP report) for ``args.backbone``."""
    from lpt_core.info import default_config_for, flops_report, parameter_report
    from lpt_core.models import MethodConfig, PromptConfig

    if args.num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {args.num_classes}")
    kwargs: dict[str, Any] = {} if args.img_size is None else {"img_size": args.img_size}
    cfg = default_config_for(args.backbone, **kwargs)
    if args.group_start is not None:
        prompt = PromptConfig(**{**cfg.prompt.__dict__, "group_start": args.group_start})
        cfg = MethodConfig(prompt=prompt, head_dropout=cfg.head_dropout)
    report: dict[str, Any] = parameter_report(args.backbone, args.num_classes, cfg, **kwargs)
    if args.flops:
        report["flops"] = flops_report(args.backbone, args.num_classes, cfg, **kwargs)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the parameter (and FLOP) report."""
    lines = [
        f"backbone {report['backbone']}: {report['backbone_params']:,} parameters; {report['num_classes']} classes",
        f"{'method':<8} {'phase':<7} {'trainable':>12} {'% backbone':>10} {'stored':>12} {'% backbone':>10}",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['method']:<8} {r['phase']:<7} {r['trainable']:>12,} {100 * r['trainable_ratio']:>9.3f}% "
            f"{r['stored']:>12,} {100 * r['stored_ratio']:>9.3f}%"
        )
    if "flops" in report:
        lines.append("inference FLOPs per image (FlopCounterMode):")
        for name, value in report["flops"]["flops"].items():
            lines.append(f"  {name:<20} {value / 1e9:>7.2f} GFLOPs  {report['flops']['ratio_to_plain'][name]:.3f}x plain")
    return "\n".join(lines)
