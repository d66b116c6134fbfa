"""Token decoding ablation: one trained model's token heads evaluated with `argmax` and with `bio_viterbi`.

    python benchmarks/decoding_ablation.py --run runs/quality/ner [--split test]

Reads `<run>/model` and `<run>/tokenized/<task>/<split>.parquet`; prints entity P/R/F1 per decoding and how many
predicted sentences were invalid BIO, then the same as JSON last.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtl_model.decoding import is_valid_bio
from mtl_model.evaluate import token_log_probs, token_metrics, word_tags
from mtl_model.model import MultiTaskModel
from mtl_model.tokenization import load_tokenized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a pipeline output folder (model/ and tokenized/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    model, _ = MultiTaskModel.load(Path(args.run) / "model")
    results = {}
    for name, spec in model.head_specs.items():
        path = Path(args.run) / "tokenized" / name / f"{args.split}.parquet"
        if spec.kind != "token" or not path.is_file():
            continue
        split = load_tokenized(path)
        log_probs = token_log_probs(model, split, name, batch_size=args.batch_size, device="cpu")
        for decoding in ("argmax", "bio_viterbi"):
            gold, predicted = word_tags(split, log_probs, spec.labels, decoding)
            metrics = token_metrics(gold, predicted)
            metrics["invalid_sentences"] = sum(not is_valid_bio(tags) for tags in predicted)
            results[f"{name}/{decoding}"] = metrics
            print(
                f"{name:10} {decoding:12} P {100 * metrics['precision']:6.2f}  R {100 * metrics['recall']:6.2f}  "
                f"F1 {100 * metrics['f1']:6.2f}  invalid BIO sentences {metrics['invalid_sentences']}"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
