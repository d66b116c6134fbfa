"""Fill `gpu_bundle/` with what a bare GPU machine lacks for `benchmarks/gpu_check.py`, in at most 60 MiB.

    python -m benchmarks.gpu_bundle [--out gpu_bundle] [--data-dir ../shared/data | --sample-data]

The GPU machine (docs/GPU.md) has torch, transformers and sentence-transformers but not this project's bundled
backbone (90 MB in fp32: too big for the 64 MiB that travels with the checkout), not `../shared`, and no package
index. So the bundle holds:

- `backbone/`: all-MiniLM-L6-v2 with its weights in fp16 (45 MB), its tokenizer and configs; checked here to
  reload within fp16 rounding of the fp32 weights and to embed within cosine 0.99999 of them;
- `data/`: the three-task real data (AG News test, SST-2 train/dev, CoNLL-2003), gzip-compressed; all of it, since
  `gpu_check` chooses at run time the largest slice its time box allows (`--sample-data`: the team-written
  sample in the same layout, for smoke runs where `../shared/data` is absent);
- `wheels/`: cp312 wheels of what `mtl_model` imports that the machine lacks (pydantic and its parts, seqeval), at
  the versions of `requirements.lock`;
- `manifest.json`: sha256 and size of every file, and per section the inputs it was built from.

Idempotent: a section whose inputs are unchanged and whose files still match the manifest is kept as it is, so a
second run only hashes (about a second). Stdlib only at import: `gpu_check` verifies bundles with it before torch.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "gpu_bundle"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
MANIFEST = "manifest.json"
FORMAT = 1
LIMIT_BYTES = 60 * 2**20

BACKBONE = "bundled:all-MiniLM-L6-v2"
WEIGHTS = "model.safetensors"
# fp16 keeps 11 significant bits: rounding moves a normal value by at most 2^-11 of itself, a subnormal one
# (|w| < 2^-14) by at most 2^-25. `allclose(fp16 → fp32, fp32, rtol=2^-11, atol=2^-25)` is that guarantee.
FP16_RTOL, FP16_ATOL = 2.0**-11, 2.0**-25
EMBED_COSINE_MIN = 0.99999  # fp16-stored weights, computed in fp32, against the original fp32 weights

# Bundle path → path in data/sample/ (the same formats): the files of data/configs/three_task.yaml.
DATA_FILES = {
    "ag_news/test.csv": "topic/news.csv",
    "sst2/train.tsv": "sentiment/train.tsv",
    "sst2/dev.tsv": "sentiment/dev.tsv",
    "conll2003/train.txt": "ner/train.txt",
    "conll2003/dev.txt": "ner/dev.txt",
    "conll2003/test.txt": "ner/test.txt",
}
# What `mtl_model` imports that the GPU machine's image lacks (docs/GPU.md), as named in requirements.lock.
WHEELS = ("pydantic", "pydantic_core", "annotated-types", "typing-inspection", "typing_extensions", "seqeval")
SOURCE_ONLY = {"seqeval"}  # no wheel on PyPI: built here (pure Python, py3-none-any)
PLATFORM_ARGS = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"] + [
    arg
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
    for arg in ("--platform", tag)
]


# ------------------------------------------------------------------------------ hashing, manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(root: Path) -> list[str]:
    """Every file under `root` but the manifest, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def file_records(root: Path, names: list[str]) -> dict[str, dict]:
    return {name: {"sha256": sha256_of(root / name), "bytes": (root / name).stat().st_size} for name in names}


def read_manifest(bundle: Path) -> dict | None:
    try:
        manifest = json.loads((bundle / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def verify_bundle(bundle: str | Path) -> list[str]:
    """Every problem with a built bundle: no manifest, a file missing, changed, or not in the manifest (none: OK)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if manifest is None:
        return [f"{bundle / MANIFEST}: missing or not a format-{FORMAT} bundle manifest; run `make gpu-bundle`"]
    recorded, present = manifest["files"], set(list_files(bundle)) if bundle.is_dir() else set()
    problems = [f"{name}: not in the manifest" for name in sorted(present - set(recorded))]
    for name, record in recorded.items():
        path = bundle / name
        if name not in present:
            problems.append(f"{name}: missing")
        elif path.stat().st_size != record["bytes"] or sha256_of(path) != record["sha256"]:
            problems.append(f"{name}: differs from the manifest (sha256 {record['sha256'][:12]}…)")
    return problems


def section_intact(bundle: Path, manifest: dict | None, section: str, inputs: str) -> bool:
    """The section was built from these inputs and its files are exactly the recorded ones."""
    if manifest is None or manifest.get("sections", {}).get(section, {}).get("inputs") != inputs:
        return False
    recorded = {name: r for name, r in manifest["files"].items() if name.startswith(section + "/")}
    on_disk = [name for name in list_files(bundle) if name.startswith(section + "/")] if bundle.is_dir() else []
    return bool(recorded) and sorted(recorded) == on_disk and file_records(bundle, on_disk) == recorded


# ------------------------------------------------------------------------------------- backbone


def backbone_inputs() -> str:
    """The bundled weights' pinned sha256 stands for them (hashing 90 MB again is not needed to know them)."""
    from mtl_model.backbone import BUNDLED_MODELS

    return f"{BACKBONE} {BUNDLED_MODELS[BACKBONE.split(':', 1)[1]][1]} fp16 rtol={FP16_RTOL} atol={FP16_ATOL}"


def expand_backbone(source: str | Path, target: str | Path) -> Path:
    """A copy of a backbone folder with its floating weights in fp32: what `from_pretrained` and
    `SentenceTransformer` load as the same model everywhere (transformers 5 would keep fp16 weights fp16)."""
    from safetensors.torch import load_file, save_file

    source, target = Path(source), Path(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(WEIGHTS), dirs_exist_ok=True)
    weights = load_file(str(source / WEIGHTS))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, str(target / WEIGHTS))
    return target


def build_backbone(target: Path) -> dict:
    """fp16 weights + everything else of the bundled folder, verified against the fp32 original."""
    import torch
    from safetensors.torch import load_file, save_file

    from mtl_model.backbone import resolve_backbone

    source = Path(resolve_backbone(BACKBONE))  # checks the pinned sha256
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(WEIGHTS))
    original = load_file(str(source / WEIGHTS))
    largest = max(float(v.abs().max()) for v in original.values() if v.is_floating_point())
    if largest >= float(torch.finfo(torch.float16).max):
        raise ValueError(f"a weight of {largest} does not fit in fp16")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in original.items()}, str(target / WEIGHTS))
    return verify_fp16_backbone(source, target, original)


def verify_fp16_backbone(source: Path, target: Path, original: dict) -> dict:
    """Weights within fp16 rounding (FP16_RTOL, FP16_ATOL); embeddings of sentences at cosine ≥ EMBED_COSINE_MIN."""
    import torch
    from safetensors.torch import load_file

    reloaded = load_file(str(target / WEIGHTS))
    worst = 0.0
    for name, weight in original.items():
        if not weight.is_floating_point():  # integer buffers (position ids) are copied as they are
            if not torch.equal(reloaded[name], weight):
                raise ValueError(f"{name}: changed in the fp16 copy")
            continue
        back = reloaded[name].float()
        if not torch.allclose(back, weight, rtol=FP16_RTOL, atol=FP16_ATOL):
            raise ValueError(f"{name}: fp16 copy is not within rtol {FP16_RTOL}, atol {FP16_ATOL} of fp32")
        worst = max(worst, float(((back - weight).abs() / weight.abs().clamp_min(2.0**-14)).max()))
    with tempfile.TemporaryDirectory() as tmp:
        cosine, max_abs = compare_embeddings(source, expand_backbone(target, Path(tmp) / "fp32"))
    if cosine < EMBED_COSINE_MIN:
        raise ValueError(f"fp16-stored backbone embeds at cosine {cosine:.7f} < {EMBED_COSINE_MIN} of fp32")
    return {
        "name": BACKBONE,
        "dtype": "float16",
        "weights_rtol": FP16_RTOL,
        "weights_atol": FP16_ATOL,
        "max_relative_error": worst,
        "embedding_min_cosine": cosine,
        "embedding_max_abs_diff": max_abs,
    }


def compare_embeddings(a: Path, b: Path) -> tuple[float, float]:
    """(min cosine, max |difference|) of mean-pooled, normalised fp32 embeddings of sample sentences."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = [line.split("\t")[0] for line in (SAMPLE_DIR / "sentiment/dev.tsv").read_text().splitlines()[1:65]]
    tokenizer = AutoTokenizer.from_pretrained(a)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    vectors = []
    for path in (a, b):
        model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state  # (N, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (N, T, 1)
        vectors.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))  # (N, H)
    cosine = float((vectors[0] * vectors[1]).sum(-1).min())
    return cosine, float((vectors[0] - vectors[1]).abs().max())


# ----------------------------------------------------------------------------------------- data


def data_sources(data_dir: Path | None) -> dict[str, Path]:
    """Bundle path → source file: the real data in `data_dir`, or (None) the sample in the same layout."""
    if data_dir is None:
        return {name: SAMPLE_DIR / sample for name, sample in DATA_FILES.items()}
    missing = [name for name in DATA_FILES if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir}: missing {', '.join(missing)} (pass --sample-data for a smoke bundle)")
    return {name: data_dir / name for name in DATA_FILES}


def data_inputs(sources: dict[str, Path]) -> str:
    kind = "sample" if all(SAMPLE_DIR in p.parents for p in sources.values()) else "real"
    return kind + " " + " ".join(f"{name}:{sha256_of(path)}" for name, path in sorted(sources.items()))


def build_data(target: Path, sources: dict[str, Path]) -> dict:
    """Each file gzip-compressed with a fixed header (the same bytes every build), and its line count."""
    counts = {}
    for name, source in sources.items():
        path = target / (name + ".gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = source.read_bytes()
        with open(path, "wb") as handle, gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as packed:
            packed.write(raw)
        counts[name] = raw.count(b"\n")
    kind = "sample" if all(SAMPLE_DIR in p.parents for p in sources.values()) else "real"
    return {"source": kind, "lines": counts}


# --------------------------------------------------------------------------------------- wheels


def pinned_versions(names: tuple[str, ...] = WHEELS) -> dict[str, str]:
    """The versions requirements.lock pins for `names` (the versions the CPU suite is tested with)."""
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match and match.group(1) in names:
            pins[match.group(1)] = match.group(2)
    missing = sorted(set(names) - set(pins))
    if missing:
        raise ValueError(f"requirements.lock pins no version of {missing}")
    return pins


def wheels_inputs() -> str:
    return "cp312 manylinux_2_28 " + " ".join(f"{n}=={v}" for n, v in sorted(pinned_versions().items()))


def build_wheels(target: Path) -> dict:
    """Download the binary/pure wheels for cp312 and build the source-only ones (network: PyPI)."""
    target.mkdir(parents=True)
    pins = pinned_versions()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    binary = [f"{n}=={v}" for n, v in pins.items() if n not in SOURCE_ONLY]
    subprocess.run([*pip, "download", "--no-deps", *PLATFORM_ARGS, "-d", str(target), *binary], check=True)
    for name in sorted(SOURCE_ONLY):
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(target), f"{name}=={pins[name]}"], check=True)
    wheels = sorted(p.name for p in target.glob("*.whl"))
    if len(wheels) != len(pins) or len(wheels) != len(list(target.iterdir())):
        raise ValueError(f"expected one wheel per pin {sorted(pins)}, got {wheels}")
    return {"python": "cp312", "wheels": wheels}


# ---------------------------------------------------------------------------------------- build


def build_bundle(out: str | Path = DEFAULT_OUT, data_dir: str | Path | None = DEFAULT_DATA) -> tuple[dict, list[str]]:
    """Build or refresh the bundle; returns (manifest, sections rebuilt). `data_dir=None`: the sample data."""
    out = Path(out)
    sources = data_sources(Path(data_dir) if data_dir is not None else None)
    sections: dict[str, tuple[str, Callable[[Path], dict]]] = {
        "backbone": (backbone_inputs(), build_backbone),
        "data": (data_inputs(sources), lambda target: build_data(target, sources)),
        "wheels": (wheels_inputs(), build_wheels),
    }
    old = read_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    info, rebuilt = {}, []
    for name, (inputs, build) in sections.items():
        if section_intact(out, old, name, inputs):
            info[name] = old["sections"][name]
            continue
        shutil.rmtree(out / name, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=out) as tmp:  # built aside, moved in whole
            details = build(Path(tmp) / name)
            os.replace(Path(tmp) / name, out / name)
        info[name], rebuilt = {"inputs": inputs, "info": details}, [*rebuilt, name]
    for stray in sorted({p.name for p in out.iterdir()} - set(sections) - {MANIFEST}):  # left by older formats
        if (out / stray).is_dir():
            shutil.rmtree(out / stray)
        else:
            (out / stray).unlink()
    return write_manifest(out, info), rebuilt


def write_manifest(out: Path, sections: dict) -> dict:
    files = file_records(out, list_files(out))
    total = sum(record["bytes"] for record in files.values())
    if total > LIMIT_BYTES:
        raise ValueError(f"{out}: {total / 2**20:.1f} MiB is over the {LIMIT_BYTES / 2**20:.0f} MiB limit")
    manifest = {"format": FORMAT, "total_bytes": total, "limit_bytes": LIMIT_BYTES, "sections": sections}
    manifest["files"] = files
    temp = out / (MANIFEST + ".tmp")
    temp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(temp, out / MANIFEST)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the real datasets (../shared/data)")
    source.add_argument("--sample-data", action="store_true", help="bundle data/sample instead (smoke runs only)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        manifest, rebuilt = build_bundle(args.out, None if args.sample_data else args.data_dir)
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sections = manifest["sections"]
    print(
        f"{args.out}: {manifest['total_bytes'] / 2**20:.1f} MiB in {len(manifest['files'])} files "
        f"(limit {LIMIT_BYTES / 2**20:.0f}); rebuilt: {', '.join(rebuilt) or 'nothing (up to date)'}; "
        f"data: {sections['data']['info']['source']}; backbone cosine vs fp32 "
        f"{sections['backbone']['info']['embedding_min_cosine']:.7f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
