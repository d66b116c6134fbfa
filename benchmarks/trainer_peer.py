"""The peer at equal wall time: this pipeline against the Hugging Face `Trainer`, single-task, same backbone.

For each task (CoNLL-2003 NER, SST-2 sentiment):

1. **ours**: `python -m mtl_model` on the shipped recipe (`data/configs/three_task.yaml`, `--tasks <task>`) for
   `--ours-steps` optimizer steps; its training time T (the training loop, model loading and evaluation excluded)
   is the budget.
2. **HF**: a `Trainer` on the same backbone, the `run_ner.py` / `run_glue.py` recipe: first-sub-word labels
   (`label_all_tokens=False`), AdamW 5e-5, linear schedule, no warm-up, batch `--batch-size`, dynamic padding, fp32
   on CPU (its default) — given the same T: a 20-step probe measures its step time, then `max_steps = T / step
   time` so its schedule ends inside the budget (a callback also stops it at T, in case the probe was optimistic).

Both are scored on the same test split with the same metric code (`mtl_model.evaluate`: seqeval entity F1 over
every gold word, words cut by truncation predicted `O`; accuracy for SST-2). HF's NER tags are its arg-max per
first sub-word, as `run_ner.py` predicts them.

    python benchmarks/trainer_peer.py --data-dir ../shared/data --ours-steps 600 [--tasks ner,sentiment]

Prints a table, then one JSON line (last).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtl_model.backbone import load_tokenizer, resolve_backbone
from mtl_model.evaluate import metrics_kind, primary_metric, sentence_metrics, token_metrics
from mtl_model.predict import first_sub_words
from mtl_model.readers import read_conll, read_glue_tsv
from mtl_model.runtime import quiet_third_party
from mtl_model.tokenization import align_labels_to_subwords

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "bundled:all-MiniLM-L6-v2"
MAX_LENGTH = 128
CONLL_TAGS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
TASK_FILES = {
    "ner": ("conll2003/train.txt", "conll2003/test.txt"),
    "sentiment": ("sst2/train.tsv", "sst2/dev.tsv"),
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_ours(task: str, data_dir: str, out: Path, steps: int, extra: list[str]) -> dict:
    """The pipeline's own CLI, so the recipe is exactly what a user runs."""
    command = [
        sys.executable, "-m", "mtl_model", "--config", str(REPO / "data/configs/three_task.yaml"),
        "--data-dir", data_dir, "--out", str(out), "--tasks", task, "--device", "cpu", "--json",
        "--set", f"train.max_steps={steps}", "--set", "embed.corpus=null", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"ours ({task}) failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout)
    metrics = result["metrics"][task]
    return {
        "train_seconds": result["training"]["seconds"],
        "wall_seconds": time.perf_counter() - started,
        "steps": result["training"]["steps"],
        "examples_seen": sum(result["training"]["examples_per_task"].values()),
        "metric": headline(metrics),
        "metrics": metrics,
    }


def headline(metrics: dict) -> float:
    """The task's headline number, as the pipeline picks it: entity F1 for token tasks, else accuracy."""
    return metrics[primary_metric(metrics_kind(metrics))]


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def encode_ner(tokenizer, examples) -> list[dict]:
    """run_ner.py's rule, which is ours too (`align_labels_to_subwords`): the first sub-word of a word carries its
    tag, other sub-words and specials -100."""
    tag_id = {tag: i for i, tag in enumerate(CONLL_TAGS)}
    encoded = tokenizer([e.tokens for e in examples], is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
    rows = []
    for row, example in enumerate(examples):
        word_ids = encoded.word_ids(row)
        labels, _ = align_labels_to_subwords(word_ids, [tag_id[tag] for tag in example.tags])
        rows.append({"input_ids": encoded["input_ids"][row], "attention_mask": encoded["attention_mask"][row],
                     "labels": labels, "word_ids": word_ids})  # fmt: skip
    return rows


def encode_sentences(tokenizer, examples) -> list[dict]:
    encoded = tokenizer([e.text for e in examples], truncation=True, max_length=MAX_LENGTH)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": int(e.label)}
        for ids, mask, e in zip(encoded["input_ids"], encoded["attention_mask"], examples)
    ]


def hf_trainer(task: str, rows: list[dict], steps: int, batch_size: int, budget: float | None, output_dir: str):
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    class StopAtBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if budget is not None and time.perf_counter() - self.started >= budget:
                control.should_training_stop = True

    path = resolve_backbone(BACKBONE)
    tokenizer = load_tokenizer(BACKBONE)
    torch.manual_seed(0)
    if task == "ner":
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(CONLL_TAGS))
        collator = DataCollatorForTokenClassification(tokenizer)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        collator = DataCollatorWithPadding(tokenizer)
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch_size, per_device_eval_batch_size=128,
        max_steps=steps, learning_rate=5e-5, warmup_steps=0, weight_decay=0.0, lr_scheduler_type="linear",
        use_cpu=True, save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[],
        disable_tqdm=True, seed=0, dataloader_num_workers=0, remove_unused_columns=False,
    )  # fmt: skip
    train_rows = [{k: v for k, v in row.items() if k != "word_ids"} for row in rows]
    return Trainer(
        model=model, args=args, train_dataset=_Rows(train_rows), data_collator=collator, callbacks=[StopAtBudget()]
    )


def hf_probe(task: str, rows: list[dict], batch_size: int, output_dir: str, probe_steps: int = 20) -> float:
    """Seconds per step of the HF recipe, from a short run (its first 5 steps excluded as warm-up)."""
    trainer = hf_trainer(task, rows, probe_steps, batch_size, None, output_dir)
    stamps: list[float] = []
    from transformers import TrainerCallback

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    trainer.add_callback(Stamp())
    trainer.train()
    return (stamps[-1] - stamps[4]) / (len(stamps) - 5)


def first_sub_word_tags(word_ids: list[int | None], best: np.ndarray, words: int) -> list[str]:
    """run_ner.py's prediction: each word's tag is the arg-max at its first sub-word; words cut by truncation stay
    `O`, as in our evaluation. `best`: (T,) class ids per token."""
    tags = ["O"] * words
    for word, position in first_sub_words(word_ids):
        tags[word] = CONLL_TAGS[int(best[position])]
    return tags


def hf_score(task: str, trainer, test_rows: list[dict], test_examples) -> dict:
    eval_rows = [{k: v for k, v in row.items() if k != "word_ids"} for row in test_rows]
    prediction = trainer.predict(_Rows(eval_rows))
    if task == "sentiment":
        return sentence_metrics(prediction.label_ids, prediction.predictions.argmax(-1))
    gold = [example.tags for example in test_examples]
    predicted = [
        first_sub_word_tags(row["word_ids"], prediction.predictions[index].argmax(-1), len(example.tokens))
        for index, (row, example) in enumerate(zip(test_rows, test_examples))
    ]
    return token_metrics(gold, predicted)


def run_hf(task: str, data_dir: str, budget: float, batch_size: int) -> dict:
    train_file, test_file = (Path(data_dir) / name for name in TASK_FILES[task])
    reader = read_conll if task == "ner" else read_glue_tsv
    train_examples, test_examples = reader(train_file).examples, reader(test_file).examples
    tokenizer = load_tokenizer(BACKBONE)
    encode = encode_ner if task == "ner" else encode_sentences
    train_rows, test_rows = encode(tokenizer, train_examples), encode(tokenizer, test_examples)
    with tempfile.TemporaryDirectory() as output_dir:
        step_seconds = hf_probe(task, train_rows, batch_size, output_dir)
        steps = max(1, int(budget / step_seconds))
        trainer = hf_trainer(task, train_rows, steps, batch_size, budget, output_dir)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        metrics = hf_score(task, trainer, test_rows, test_examples)
    done = trainer.state.global_step
    return {
        "train_seconds": seconds,
        "probe_step_seconds": step_seconds,
        "planned_steps": steps,
        "steps": done,
        "examples_seen": done * batch_size,
        "metric": headline(metrics),
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    parser.add_argument("--tasks", default="ner,sentiment")
    parser.add_argument("--ours-steps", type=int, default=600, help="our optimizer steps; their time is the budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=str(REPO / "runs/peer"))
    parser.add_argument("--set", action="append", default=[], help="extra `--set` for ours (e.g. model.casing_dim=16)")
    args = parser.parse_args(argv)
    quiet_third_party()
    data_dir = str(Path(args.data_dir).resolve())
    extra = [item for value in args.set for item in ("--set", value)]
    report = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "cores": os.cpu_count(), "tasks": {}}
    for task in args.tasks.split(","):
        ours = run_ours(task, data_dir, Path(args.out) / f"ours-{task}", args.ours_steps, extra)
        hf = run_hf(task, data_dir, ours["train_seconds"], args.batch_size)
        report["tasks"][task] = {"ours": ours, "hf": hf, "difference": 100 * (ours["metric"] - hf["metric"])}
        print(json.dumps({task: report["tasks"][task]}), file=sys.stderr, flush=True)
    print(f"CPU: {report['cpu']} ({report['cores']} cores, torch {report['threads']} threads)")
    print(f"{'task':10} {'budget s':>9} {'ours steps':>10} {'ours':>7} {'HF steps':>9} {'HF s':>7} {'HF':>7} {'Δ':>6}")
    for task, row in report["tasks"].items():
        ours, hf = row["ours"], row["hf"]
        print(
            f"{task:10} {ours['train_seconds']:9.0f} {ours['steps']:10d} {100 * ours['metric']:7.2f} "
            f"{hf['steps']:9d} {hf['train_seconds']:7.0f} {100 * hf['metric']:7.2f} {row['difference']:+6.2f}"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
