"""``nas-jax repnas``: the RepNAS job, and the import of official RepNAS checkpoints.

    nas-jax repnas --config experiments/configs/repnas_digits.py --workdir W [--config.key=value ...]
    nas-jax repnas import --checkpoint F.pth --model repvgg_a0 --workdir W \\
        [--mask genotype.json | --kept-ratio 0.34] [--num-classes 1000] [--width 1.0] \\
        [--dataset imagenet2012 --data-dir D --split validation --image-size 224]
"""
from __future__ import annotations

import json

HELP = "RepNAS: search, fix, train and fuse (default), or import an official supernet checkpoint"
ACTIONS = ("search", "import")


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", default="search", choices=ACTIONS)
    parser.add_argument("--workdir", required=True, help="outputs: report.json, genotype.json, deploy/, heatmaps")
    parser.add_argument("--config", help="search: experiments/configs/repnas_*.py")
    parser.add_argument("--checkpoint", help="import: an official supernet state_dict (.pth/.pt/.npz)")
    parser.add_argument("--model", help="import: zoo model name, e.g. repvgg_a0")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--mask", help="import: genotype.json (default: the noise-free top-k of the alphas)")
    parser.add_argument("--kept-ratio", type=float, default=0.34, help="import: the budget the mask is derived with")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--split", default="test")
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.set_defaults(takes_config_overrides=True)


def _need(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise ValueError(f"repnas {args.action} needs {' '.join(missing)}")


def run(args) -> int:
    from nas_jax.train.config import apply_overrides, load_config

    if args.action == "search":
        _need(args, "config")
        from nas_jax.repnas.run import search, summary

        config = apply_overrides(load_config(args.config), args.config_overrides)
        report = search(config, args.workdir)
        print(summary(report, args.workdir))
        return 0
    _need(args, "checkpoint", "model")
    if args.config_overrides:
        raise ValueError("repnas import takes no --config.key=value overrides")
    from nas_jax.repnas.official import import_official

    report = import_official(args.checkpoint, args.model, args.workdir, num_classes=args.num_classes,
                             width=args.width, mask_file=args.mask, kept_ratio=args.kept_ratio,
                             dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                             image_size=args.image_size, batch_size=args.batch_size)
    print(json.dumps(report, indent=2))
    return 0
