"""``r1mega-convert``: HF <-> Megatron checkpoint conversion and logits parity.

::

    r1mega-convert import --hf-path HF_DIR --megatron-path OUT [--tp N --pp N --ep N --etp N]
                          [--dtype fp32|bf16] [--model-config conf/model/x.yaml] [--name NAME]
                          [--mtp auto|require|drop]
    r1mega-convert export --megatron-path DIR --hf-path OUT [--fp8] [--max-shard-gb G]
    r1mega-convert verify --hf-path HF_DIR --megatron-path DIR [--seq-len S --batch B --seed N]

Run as one process, the model is built whole (TP=PP=EP=1) and ``--tp/--pp/--ep/--etp`` of
``import`` name the layout the checkpoint is meant for: they are validated against the model
(heads, experts, layers must divide) and recorded in ``r1mega.json``; the checkpoint itself
loads at any layout. ``--mtp`` (DeepSeek-V3 multi-token prediction): ``auto`` (default) imports
the MTP layers ``config.json`` declares when their tensors are there, else none, saying so on
stderr (transformers' ``save_pretrained`` declares them but writes none); ``require`` fails
naming the first missing tensor; ``drop`` imports none. Under ``torchrun --nproc-per-node W`` the flags are the layout the
conversion runs at (W must match it), and each rank holds only its shard.

``verify`` prints one JSON line: ``{"max_abs_diff", "mean_abs_diff", "top1_agreement", ...}``.
User errors (missing or misshapen tensors, unknown architectures, config mismatches:
``ConfigError`` / ``InputError``) exit with status 2 and one line naming the tensor or field; any
other exception is a bug and keeps its traceback (status 1).
"""

from __future__ import annotations

import argparse
import json
import sys


def _layout_flags(p: argparse.ArgumentParser) -> None:
    for flag in ("tp", "pp", "ep", "etp"):
        p.add_argument(f"--{flag}", type=int, default=1, help=f"{flag.upper()} size (see module help)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="r1mega-convert", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="HF safetensors -> Megatron distributed checkpoint")
    imp.add_argument("--hf-path", required=True)
    imp.add_argument("--megatron-path", required=True)
    imp.add_argument("--dtype", choices=("fp32", "bf16"), default=None,
                     help="parameter dtype (default: bf16 for bf16/FP8 checkpoints, else fp32)")
    imp.add_argument("--model-config", default=None,
                     help="YAML model config to check against config.json and record (training choices)")
    imp.add_argument("--name", default=None, help="model name recorded in the checkpoint")
    imp.add_argument("--mtp", choices=("auto", "require", "drop"), default="auto",
                     help="multi-token-prediction layers: import those present (auto), all declared (require) "
                          "or none (drop)")
    _layout_flags(imp)

    exp = sub.add_parser("export", help="Megatron distributed checkpoint -> HF safetensors")
    exp.add_argument("--megatron-path", required=True)
    exp.add_argument("--hf-path", required=True)
    exp.add_argument("--fp8", action="store_true", help="write DeepSeek-style 128x128-block FP8 linear weights")
    exp.add_argument("--max-shard-gb", type=float, default=5.0)
    exp.add_argument("--tokenizer", default=None, help="copy tokenizer files from here (default: hf_assets)")
    _layout_flags(exp)

    ver = sub.add_parser("verify", help="logits parity of a HF and a Megatron checkpoint")
    ver.add_argument("--hf-path", required=True)
    ver.add_argument("--megatron-path", required=True)
    ver.add_argument("--seq-len", type=int, default=32)
    ver.add_argument("--batch", type=int, default=2)
    ver.add_argument("--seed", type=int, default=0)
    _layout_flags(ver)
    return ap


def _load_yaml_model(path: str):
    from omegaconf import OmegaConf

    from r1mega.models.config import ModelConfig

    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    cfg = ModelConfig(**raw)
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> dict:
    """Execute one sub-command; returns a JSON-able summary."""
    import r1mega.convert as conv

    layout = dict(tp=args.tp, pp=args.pp, ep=args.ep, etp=args.etp)
    if args.command == "import":
        override = _load_yaml_model(args.model_config) if args.model_config else None
        out = conv.import_hf(args.hf_path, args.megatron_path, dtype=args.dtype, model_config=override,
                             name=args.name, mtp=args.mtp, **layout)
        return {"command": "import", "checkpoint": str(out)}
    if args.command == "export":
        out = conv.export_hf(args.megatron_path, args.hf_path, fp8=args.fp8, tokenizer_from=args.tokenizer,
                             max_shard_bytes=int(args.max_shard_gb * 2**30), **layout)
        return {"command": "export", "hf_path": str(out)}
    return conv.verify(args.hf_path, args.megatron_path, batch=args.batch, seq_len=args.seq_len, seed=args.seed,
                       **layout)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from r1mega.config.errors import ConfigError

    warnings.filterwarnings("ignore")
    args = parser().parse_args(argv)
    try:
        result = run(args)
    except ConfigError as exc:  # bad flags or input files; anything else keeps its traceback
        print(f"r1mega-convert {args.command}: error: {exc}", file=sys.stderr)
        return 2
    from r1mega.convert.megatron_io import rank

    if result is not None and rank() == 0:
        print(json.dumps(result), flush=True)
    _shutdown()
    return 0


def _shutdown() -> None:
    """Leave the process group cleanly under torchrun (a one-process run just exits)."""
    import os

    import torch.distributed as dist

    if dist.is_initialized() and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
