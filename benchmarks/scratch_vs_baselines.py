"""The from-scratch encoder next to the fine-tuned MiniLM and a TF-IDF + logistic regression baseline.

    python benchmarks/scratch_vs_baselines.py --data-dir ../shared/data [--steps 3000] \
        [--minilm-run runs/quality/multi | --minilm-steps 2000] [--out runs/quality/scratch]

1. Trains the from-scratch pipeline (`data/configs/scratch_three_task.yaml`, vocabulary built from the
   training splits) with the library's plain step functions, and evaluates it on the test splits.
2. Fits the classical baselines here, on exactly the splits the pipeline reads (`load_task_data`, same
   seeded split of AG News): TF-IDF of word 1–2-grams + LogisticRegression for sentence tasks; for NER a
   per-word logistic regression (SGD) on sparse word features (the word, its lowercase, shape, affixes and its
   neighbours), scored with seqeval like the models.
3. The fine-tuned MiniLM: read from an earlier run's `metrics.json` (`--minilm-run`), or trained here on
   the three-task config (`--minilm-steps`).

Prints one Markdown table (test metrics: accuracy for sentence tasks, entity F1 for NER) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mtl_model.config import plan_run
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.evaluate import primary_metrics, token_metrics
from mtl_model.pipeline import run_pipeline
from mtl_model.runtime import quiet_third_party
from mtl_model.task_data import load_task_data

REPO = Path(__file__).resolve().parent.parent


def tfidf_sentence_baseline(train, test) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform([e.text for e in train])
    classifier = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, [e.label for e in train])
    predicted = classifier.predict(vectorizer.transform([e.text for e in test]))
    gold = [e.label for e in test]
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "f1": float(f1_score(gold, predicted, average="macro")),
    }


def _word_features(tokens: list[str], i: int) -> dict[str, float]:
    word = tokens[i]
    shape = "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in word)[:6]
    features = {
        f"w={word}": 1.0,
        f"lw={word.lower()}": 1.0,
        f"shape={shape}": 1.0,
        f"pre3={word[:3]}": 1.0,
        f"suf3={word[-3:]}": 1.0,
        f"title={word.istitle()}": 1.0,
        f"upper={word.isupper()}": 1.0,
    }
    for offset in (-1, 1):
        j = i + offset
        neighbour = tokens[j].lower() if 0 <= j < len(tokens) else "<edge>"
        features[f"{offset}:lw={neighbour}"] = 1.0
        features[f"{offset}:title={0 <= j < len(tokens) and tokens[j].istitle()}"] = 1.0
    return features


def _int32_indices(matrix):
    """DictVectorizer may build int64 sparse indices, which scikit-learn's SGD does not take."""
    matrix = matrix.tocsr()
    matrix.indices, matrix.indptr = matrix.indices.astype(np.int32), matrix.indptr.astype(np.int32)
    return matrix


def word_feature_ner_baseline(train, test) -> dict:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import SGDClassifier

    vectorizer = DictVectorizer()
    x_train = _int32_indices(
        vectorizer.fit_transform([_word_features(e.tokens, i) for e in train for i in range(len(e.tokens))])
    )
    y_train = [tag for e in train for tag in e.tags]
    # logistic regression fitted by SGD: ~200k words × ~300k sparse features in seconds
    classifier = SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=30, tol=1e-4, random_state=0).fit(
        x_train, y_train
    )
    x_test = _int32_indices(
        vectorizer.transform([_word_features(e.tokens, i) for e in test for i in range(len(e.tokens))])
    )
    predicted_flat = classifier.predict(x_test)
    predicted, start = [], 0
    for e in test:
        predicted.append(list(predicted_flat[start : start + len(e.tokens)]))
        start += len(e.tokens)
    return token_metrics([e.tags for e in test], predicted)


def classical_baselines(plan) -> dict:
    results = {}
    for task in plan.config.tasks:
        data = load_task_data(task, plan.files[task.name])
        started = time.perf_counter()
        if task.kind == "sentence":
            results[task.name] = tfidf_sentence_baseline(data.splits["train"], data.splits["test"])
        else:
            results[task.name] = word_feature_ner_baseline(data.splits["train"], data.splits["test"])
        results[task.name]["seconds"] = round(time.perf_counter() - started, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="runs/quality/scratch")
    parser.add_argument(
        "--steps", type=int, default=None, help="scratch training steps (default: the config's epochs)"
    )
    parser.add_argument(
        "--scratch-run",
        default=None,
        help="folder of a finished scratch run (e.g. from flows/pipeline.py) to report instead of training here",
    )
    parser.add_argument(
        "--minilm-run", default="runs/quality/multi", help="folder of a fine-tuned MiniLM run (its metrics.json)"
    )
    parser.add_argument(
        "--minilm-steps", type=int, default=2000, help="train MiniLM here when --minilm-run has no metrics.json"
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    quiet_third_party()
    device = resolve_device(args.device)

    overrides = [f"train.max_steps={args.steps}"] if args.steps else []
    plan = plan_run(
        REPO / "data/configs/scratch_three_task.yaml",
        out=args.scratch_run or args.out,
        data_dir=args.data_dir,
        overrides=overrides,
    )
    started = time.perf_counter()
    if args.scratch_run and (Path(args.scratch_run) / "metrics.json").is_file():
        finished = json.loads((Path(args.scratch_run) / "metrics.json").read_text())
        scratch = {"metrics": finished["tasks"], "training": finished["training"]}
    else:
        scratch = run_pipeline(plan, device=device, precision=resolve_precision(device, plan.config.train.precision))
    scratch_seconds = time.perf_counter() - started

    minilm_metrics = Path(args.minilm_run) / "metrics.json"
    if minilm_metrics.is_file():
        minilm = json.loads(minilm_metrics.read_text())
        minilm_source = f"{minilm_metrics} ({minilm['training']['steps']} steps)"
    else:
        minilm_plan = plan_run(
            REPO / "data/configs/three_task.yaml",
            out=args.minilm_run,
            data_dir=args.data_dir,
            overrides=[f"train.max_steps={args.minilm_steps}"],
        )
        minilm = {
            "tasks": run_pipeline(
                minilm_plan, device=device, precision=resolve_precision(device, minilm_plan.config.train.precision)
            )["metrics"]
        }
        minilm_source = f"trained here ({args.minilm_steps} steps)"

    classical = classical_baselines(plan)
    tasks = [task.name for task in plan.config.tasks]
    rows = {
        f"from scratch ({scratch['training']['trainable_params']:,} params, "
        f"{scratch['training']['steps']} steps)": scratch["metrics"],
        "fine-tuned MiniLM-L6 (22.7M params)": minilm["tasks"],
        "TF-IDF + LR (sentence) / word-feature logistic regression (NER)": classical,
    }
    print("| model | " + " | ".join(tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    for name, metrics in rows.items():
        headline = primary_metrics(metrics)
        print(f"| {name} | " + " | ".join(f"{100 * headline[t]:.2f}" for t in tasks) + " |")
    report = {
        "device": device,
        "scratch": scratch,
        "scratch_seconds": round(scratch_seconds, 1),
        "scratch_source": args.scratch_run or "trained here",
        "minilm": {"source": minilm_source, "tasks": minilm["tasks"]},
        "classical": classical,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nscratch pipeline {scratch_seconds:.0f}s on {device}; MiniLM: {minilm_source}; "
        f"written {args.out}/comparison.json"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
