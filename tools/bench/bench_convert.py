"""Memory and speed of checkpoint conversion (not a unit test): prints a small table.

A random Llama-style checkpoint of ``--gb`` GB (bf16, hidden 2048, GQA 16/4 heads, FFN 5632,
vocab 32000; the layer count is chosen to reach the size) is built by transformers
(``LlamaForCausalLM`` from its config, randomly initialised) and saved with
``save_pretrained`` as 500 MB shards; then each phase runs in its own fresh interpreter so its
peak RSS (``VmHWM`` of /proc/self/status, which counts memory-mapped file pages too; not
``ru_maxrss``, which Linux carries across ``exec`` from the forking parent) is its own. ``base RSS`` is the interpreter with torch, Megatron and the process
group loaded, measured just before the phase starts; ``growth`` = peak - base is what the
phase itself needed, compared with the *largest tensor group* a streaming converter must hold:
for import one Megatron tensor (the embedding here), for export the largest checkpoint read
group (``read_group_bytes``; one tensor if that is larger):

``safetensors read``  plain ``safe_open`` + ``get_tensor`` of every tensor, dropped at once:
                      the floor any converter that reads the files pays;
``safetensors write`` ``save_file`` + fsync of the same tensors, shard by shard (reading not
                      timed): the floor for durably writing that many bytes on this disk;
``import``            ``import_hf`` at TP=PP=EP=1 (meta model, each tensor read from HF when
                      the dist-checkpoint writer reaches it);
``export``            ``export_hf`` (checkpoint read in groups, shards written in place);
``check``             the exported tensors equal the generated ones (bit-exact).

GB/s is checkpoint bytes / wall time of the phase's work (interpreter start-up and imports
excluded); GB/CPU-s divides by the CPU time it used instead (its own and its forked writers'),
which is what to compare on a shared, loaded machine. Reads usually hit the page cache (the files were just written); writes are fsynced,
so on a disk they are bound by its write speed. ``--dir /dev/shm/...`` (tmpfs, needs ~3x the
checkpoint in free memory) removes the disk and shows the CPU cost. The directory is deleted
afterwards.

Usage: ``nice -n 19 env OMP_NUM_THREADS=1 python tools/bench/bench_convert.py [--gb 2.5] [--dir ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIDDEN, FFN, HEADS, KV_HEADS, VOCAB = 2048, 5632, 16, 4, 32000
SHARD_BYTES = 500 * 2**20


def layer_params() -> int:
    head_dim = HIDDEN // HEADS
    attn = 2 * HIDDEN * HIDDEN + 2 * KV_HEADS * head_dim * HIDDEN
    return attn + 3 * HIDDEN * FFN + 2 * HIDDEN


def hf_config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "num_hidden_layers": layers, "vocab_size": VOCAB, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "hidden_act": "silu", "dtype": "bfloat16",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    }


def tensor_shapes(layers: int) -> dict:
    head_dim = HIDDEN // HEADS
    out = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,),
           "lm_head.weight": (VOCAB, HIDDEN)}
    for i in range(layers):
        p = f"model.layers.{i}"
        out.update({
            f"{p}.input_layernorm.weight": (HIDDEN,), f"{p}.post_attention_layernorm.weight": (HIDDEN,),
            f"{p}.self_attn.q_proj.weight": (HIDDEN, HIDDEN), f"{p}.self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            f"{p}.self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            f"{p}.self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            f"{p}.mlp.gate_proj.weight": (FFN, HIDDEN), f"{p}.mlp.up_proj.weight": (FFN, HIDDEN),
            f"{p}.mlp.down_proj.weight": (HIDDEN, FFN),
        })
    return out


def generate(path: Path, gb: float) -> dict:
    """Build the random model with transformers and ``save_pretrained`` it; returns its facts."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    layers = max(1, int((gb * 1e9 / 2 - 2 * VOCAB * HIDDEN) // layer_params()))
    raw = hf_config(layers)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**raw), dtype=torch.bfloat16)
    missing = set(tensor_shapes(layers)) ^ set(model.state_dict())
    if missing:
        raise SystemExit(f"transformers' Llama tensors differ from the expected ones: {sorted(missing)[:3]}")
    model.save_pretrained(path, max_shard_size=f"{SHARD_BYTES >> 20}MB")
    del model
    nbytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return {"layers": layers, "bytes": nbytes, "shards": len(list(path.glob("*.safetensors")))}


def largest_tensor_bytes() -> int:
    """The largest single Megatron tensor (bf16): the embedding / head, or ``linear_fc1``."""
    return 2 * max(VOCAB * HIDDEN, 2 * FFN * HIDDEN)


# ---------------------------------------------------------------- phases (fresh interpreters)

def phase_read(hf: Path) -> float:
    from safetensors import safe_open

    t0 = time.perf_counter()
    for f in sorted(hf.glob("*.safetensors")):
        with safe_open(f, "pt") as h:
            for k in h.keys():
                h.get_tensor(k)
    return time.perf_counter() - t0


def phase_write(hf: Path, out: Path) -> float:
    from safetensors.torch import load_file, save_file

    out.mkdir()
    seconds = 0.0
    for f in sorted(hf.glob("*.safetensors")):
        tensors = load_file(f)
        t0 = time.perf_counter()
        save_file(tensors, str(out / f.name), metadata={"format": "pt"})
        with open(out / f.name, "rb+") as fh:
            os.fsync(fh.fileno())  # as durable as the converters' output
        seconds += time.perf_counter() - t0
        del tensors
    shutil.rmtree(out)
    return seconds


def _warm_imports() -> None:
    """Import torch/megatron/transformers before the clock starts (start-up is not conversion)."""
    import megatron.core  # noqa: F401
    import megatron.core.dist_checkpointing  # noqa: F401

    import r1mega.convert  # noqa: F401
    from r1mega.compat import cpu

    cpu.enable()


READ_GROUP_BYTES = 256 * 2**20
GROUP: dict = {}
"""Bytes of the largest tensor group the phase had to hold (set by import / export)."""
SPLITS: dict = {}
"""Seconds spent inside Megatron's dist_checkpointing save/load during the phase."""


def _timed(module, name: str, label: str) -> None:
    """Wrap ``module.name`` so its wall time accumulates in ``SPLITS[label]``."""
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SPLITS[label] = SPLITS.get(label, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)


def phase_import(hf: Path, meg: Path) -> float:
    from r1mega.convert import import_hf, importer

    _timed(importer, "_save", "dist save (incl. HF reads)")
    t0 = time.perf_counter()
    import_hf(hf, meg)
    GROUP["bytes"] = largest_tensor_bytes()
    return time.perf_counter() - t0


def phase_export(meg: Path, out: Path) -> float:
    from r1mega.convert import ckpt_read, export_hf

    sources = []
    init = ckpt_read.CheckpointSource.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        sources.append(self)

    ckpt_read.CheckpointSource.__init__ = record
    _timed(ckpt_read.CheckpointSource, "_load", "checkpoint reads")
    t0 = time.perf_counter()
    export_hf(meg, out, max_shard_bytes=SHARD_BYTES, read_group_bytes=READ_GROUP_BYTES)
    seconds = time.perf_counter() - t0
    GROUP["bytes"] = max(s.max_group_bytes for s in sources)
    return seconds


def phase_check(hf: Path, out: Path) -> float:
    import torch

    from r1mega.convert.hf_io import HFReader

    a, b = HFReader(hf), HFReader(out)
    t0 = time.perf_counter()
    bad = [n for n in a.names() if not torch.equal(a.get(n), b.get(n))]
    if bad or a.names() != b.names():
        raise SystemExit(f"export differs from the source: {bad[:3]}")
    return time.perf_counter() - t0


PHASES = {"read": phase_read, "write": phase_write, "import": phase_import, "export": phase_export,
          "check": phase_check}


def run_phase(name: str, *paths: Path) -> dict:
    """Run one phase in a fresh interpreter; returns {"seconds", "rss_gb", "children_rss_gb"}."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, __file__, "--phase", name, *map(str, paths)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _phase_main(name: str, paths: list[str]) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    if name in ("import", "export"):
        _warm_imports()
        _start_group(name, paths[0])
    base = _rss_now()
    before = _cpu_seconds()
    seconds = PHASES[name](*map(Path, paths))
    kib = 1024 / 1e9
    print(json.dumps({
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - before,
        "rss_gb": _status("VmHWM") / 1e9,  # not ru_maxrss: kept across exec from the (large) parent
        "base_rss_gb": base / 1e9,
        "group_gb": GROUP.get("bytes", 0) / 1e9,
        "children_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
        "splits": SPLITS,
    }))


def _start_group(name: str, src: str) -> None:
    """Bring the process group up (and Megatron's checkpoint modules in) before measuring."""
    import megatron.core.dist_checkpointing  # noqa: F401
    import torch.distributed.checkpoint  # noqa: F401

    from r1mega.convert import load_model_config
    from r1mega.convert.hf_io import HFReader
    from r1mega.convert.mappings import model_config_from_hf
    from r1mega.convert.megatron_io import setup

    setup(model_config_from_hf(HFReader(src).config) if name == "import" else load_model_config(src))


def _status(key: str) -> int:
    """A byte count from /proc/self/status (VmRSS: now, VmHWM: peak of this program)."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _rss_now() -> int:
    return _status("VmRSS")


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the forked writers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=2.5, help="checkpoint size in GB (keep <= 3)")
    ap.add_argument("--dir", default="/tmp/r1mega-bench-convert")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        return _phase_main(args.phase, args.paths)
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    load0 = "/".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        t0 = time.perf_counter()
        facts = generate(root / "hf", args.gb)
        gb = facts["bytes"] / 1e9
        print(f"checkpoint: {gb:.2f} GB bf16, {facts['layers']} layers, {facts['shards']} shards "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        rows = [
            ("safetensors read", run_phase("read", root / "hf")),
            ("import", run_phase("import", root / "hf", root / "meg")),
            ("safetensors write", run_phase("write", root / "hf", root / "plain")),
            ("export", run_phase("export", root / "meg", root / "out")),
            ("check (bit-exact)", run_phase("check", root / "hf", root / "out")),
        ]
        print(f"load average (1/5/15 min) at start {load0}, at end "
              f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores "
              "(wall times stretch with it)")
        print(f"{'phase':<20}{'wall s':>8}{'GB/s':>7}{'CPU s':>8}{'GB/CPU-s':>10}{'peak RSS GB':>12}"
              f"{'base GB':>9}{'growth GB':>10}{'x ckpt':>8}{'group GB':>9}{'growth/group':>13}")
        for name, r in rows:
            growth = r["rss_gb"] - r["base_rss_gb"]
            group = r.get("group_gb") or 0
            ratio = f"{growth / group:>13.2f}" if group else f"{'':>13}"
            print(f"{name:<20}{r['seconds']:>8.2f}{gb / r['seconds']:>7.2f}{r['cpu_seconds']:>8.2f}"
                  f"{gb / r['cpu_seconds']:>10.2f}{r['rss_gb']:>12.2f}{r['base_rss_gb']:>9.2f}"
                  f"{growth:>10.2f}{growth / gb:>8.2f}{group:>9.3f}{ratio}")
        for name, r in rows:
            for label, sec in r.get("splits", {}).items():
                print(f"  {name}: {sec:.2f} s of {r['seconds']:.2f} s in Megatron's {label}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
