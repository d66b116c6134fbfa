"""Training throughput: this engine against a Hugging Face `Trainer`, same model, data, batch size, steps.

Both fine-tune all-MiniLM-L6-v2 for sentiment on the same SST-2 sentences (a seeded sample of
train) at the same batch size for the same number of steps, then score SST-2 dev. Two settings:

- defaults vs defaults: ours with its defaults for the hardware (bf16 autocast where the CPU/GPU has
  native bf16, length-grouped batches, data already tokenized in Parquet); HF with `bf16=True` on GPU
  and fp32 on CPU, dynamic padding (`DataCollatorWithPadding`);
- same precision: both fp32 on CPU (both bf16 on GPU).

    python benchmarks/train_throughput.py --data-dir ../shared/data [--sentences 4096] [--batch-size 32]

Prints samples/s of each and their ratio, and dev accuracy of each, as a table and as JSON (last line).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtl_model.backbone import load_tokenizer, resolve_backbone
from mtl_model.config import TrainConfig
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.evaluate import evaluate_task
from mtl_model.model import HeadSpec, build_model
from mtl_model.readers import read_glue_tsv
from mtl_model.runtime import quiet_third_party
from mtl_model.tokenization import encode_examples, load_tokenized, pad_encoded, write_encoded
from mtl_model.train import train_multitask

BACKBONE = "bundled:all-MiniLM-L6-v2"
MAX_LENGTH = 128


def tokenized_split(examples, tokenizer, path: Path):
    """Our path: tokenize once into padded Parquet, then train from it."""
    table, _ = encode_examples(tokenizer, examples, kind="sentence", labels=["0", "1"], max_seq_length=MAX_LENGTH)
    write_encoded(
        path.with_suffix(".enc.parquet"), table, {"task": "sentiment", "kind": "sentence", "labels": ["0", "1"]}
    )
    pad_encoded(path.with_suffix(".enc.parquet"), path, max_seq_length=MAX_LENGTH, pad_token_id=tokenizer.pad_token_id)
    return load_tokenized(path)


def run_ours(train, dev, *, steps: int, batch_size: int, lr: float, device: str, precision: str, group: bool) -> dict:
    torch.manual_seed(0)
    model = build_model(
        backbone=BACKBONE,
        heads=[HeadSpec(name="sentiment", kind="sentence", labels=["0", "1"])],
        pooling="mean",
        projection_dim=None,
        normalize=True,
        head_dropout=0.1,
        max_seq_length=MAX_LENGTH,
    ).to(device)
    config = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        learning_rate=lr,
        head_learning_rate=None,
        warmup_ratio=0.1,
        precision=precision,
        group_by_length=group,
        seed=0,
    )
    if device == "cuda":
        torch.cuda.synchronize()
    result = train_multitask(model, {"sentiment": train}, config, device=device, precision=precision, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    accuracy = evaluate_task(model, dev, "sentiment", batch_size=256, device=device)["accuracy"]
    return {
        "samples_per_second": result.examples_seen / result.seconds,
        "seconds": result.seconds,
        "dev_accuracy": accuracy,
    }


class _Rows(torch.utils.data.Dataset):
    def __init__(self, encodings: list[dict]) -> None:
        self.encodings = encodings

    def __len__(self) -> int:
        return len(self.encodings)

    def __getitem__(self, index: int) -> dict:
        return self.encodings[index]


def run_hf(train_examples, dev_examples, *, steps: int, batch_size: int, lr: float, device: str, bf16: bool) -> dict:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    path = resolve_backbone(BACKBONE)
    tokenizer = load_tokenizer(BACKBONE)

    def encode(examples):
        texts = [e.text for e in examples]
        encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": int(e.label)}
            for ids, mask, e in zip(encoded["input_ids"], encoded["attention_mask"], examples)
        ]

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=256,
            max_steps=steps,
            learning_rate=lr,
            warmup_steps=int(0.1 * steps),
            weight_decay=0.01,
            lr_scheduler_type="linear",
            bf16=bf16,
            use_cpu=device == "cpu",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_Rows(encode(train_examples)),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        started = time.perf_counter()
        trainer.train()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        prediction = trainer.predict(_Rows(encode(dev_examples)))
    accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    return {"samples_per_second": steps * batch_size / seconds, "seconds": seconds, "dev_accuracy": accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument(
        "--sentences", type=int, default=None, help="training sentences (default: 4096 on CPU, all on GPU)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    quiet_third_party()
    device = resolve_device(args.device)
    torch.set_num_threads(torch.get_num_threads())

    train_all = read_glue_tsv(Path(args.data_dir) / "sst2/train.tsv").examples
    dev = read_glue_tsv(Path(args.data_dir) / "sst2/dev.tsv").examples
    count = args.sentences or (len(train_all) if device == "cuda" else 4096)
    order = np.random.default_rng(0).permutation(len(train_all))[:count]
    train = [train_all[i] for i in order]
    steps = count // args.batch_size

    tokenizer = load_tokenizer(BACKBONE)
    with tempfile.TemporaryDirectory() as tmp:
        train_split = tokenized_split(train, tokenizer, Path(tmp) / "train.parquet")
        dev_split = tokenized_split(dev, tokenizer, Path(tmp) / "dev.parquet")
        ours_default_precision = resolve_precision(device, "auto")
        hf_default_bf16 = device == "cuda"
        same_precision = "bf16" if device == "cuda" else "fp32"
        results = {
            "hf_default": run_hf(
                train,
                dev,
                steps=steps,
                batch_size=args.batch_size,
                lr=args.learning_rate,
                device=device,
                bf16=hf_default_bf16,
            ),
            "ours_default": run_ours(
                train_split,
                dev_split,
                steps=steps,
                batch_size=args.batch_size,
                lr=args.learning_rate,
                device=device,
                precision=ours_default_precision,
                group=True,
            ),
            "ours_same_precision": run_ours(
                train_split,
                dev_split,
                steps=steps,
                batch_size=args.batch_size,
                lr=args.learning_rate,
                device=device,
                precision=same_precision,
                group=True,
            ),
        }
        # On GPU HF's default is already bf16, so "same precision" compares against the same HF run.
    hf = results["hf_default"]
    rows = [
        (
            "defaults vs defaults",
            f"ours {ours_default_precision} grouped",
            "ours_default",
            f"HF {'bf16' if hf_default_bf16 else 'fp32'}",
        ),
        ("same precision", f"ours {same_precision} grouped", "ours_same_precision", f"HF {same_precision}"),
    ]
    print(
        f"device: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
        f"{count} SST-2 sentences, batch {args.batch_size}, {steps} steps"
    )
    print(
        f"{'setting':22} {'ours':24} {'samples/s':>10} {'HF':10} {'samples/s':>10} "
        f"{'ratio':>6} {'acc ours':>9} {'acc HF':>7}"
    )
    summary = {"device": device, "sentences": count, "batch_size": args.batch_size, "steps": steps, "settings": {}}
    for name, ours_label, key, hf_label in rows:
        ours = results[key]
        ratio = ours["samples_per_second"] / hf["samples_per_second"]
        print(
            f"{name:22} {ours_label:24} {ours['samples_per_second']:10.1f} "
            f"{hf_label:10} {hf['samples_per_second']:10.1f} "
            f"{ratio:6.2f} {100 * ours['dev_accuracy']:9.2f} {100 * hf['dev_accuracy']:7.2f}"
        )
        summary["settings"][name] = {
            "ours": ours,
            "hf": hf,
            "ratio": ratio,
            "ours_label": ours_label,
            "hf_label": hf_label,
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
