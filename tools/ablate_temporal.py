"""Train the same tiny model with and without the CCAM mask and compare them on temporal questions.

    python tools/ablate_temporal.py                         # generated data, defaults below, ~10-20 min on 2 CPU cores
    python tools/ablate_temporal.py --train T.json --test V.json --root DIR --eval-frames 16,32,64

Both variants share the seed, data and steps; only ``model.projector.causal_mask`` differs. The frozen SigLIP's
features of the training frames are cached in OUT/feature_cache by the first epoch and read by every later
epoch and by the second variant (--no-feature-cache when a config trains the vision tower). Without --train /
--test / --root it generates a temporal task (videoccam.synthetic.shapes.generate_temporal: the order in which
coloured shapes appear, the direction a shape moves; the answer depends on frame order, not on the set of
frames); with the default config it also builds the tiny models if they are missing.

Scoring, per ``task`` field when the data has one: a reply to your own test records is right when it equals the
answer after normalisation (lower case, punctuation and the articles a / an / the removed: "red square" matches
"The red square.", "A red square appears." does not); a reply to the generated questions is right when it names
the answer's content words (its colours, shapes and directions, in order: "Red, I think." matches "Red.",
"Red or blue." does not). The table's last lines name the rule of each task.

Writes OUT/results.json (``{"ccam": {"16": acc, "64": acc}, "no_mask": {...}, "per_task": {...}}``),
OUT/results.png (accuracy against frames) and each variant's work dir; prints a table. Exits 1 if a run
fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from videoccam import quiet
from videoccam.cli import parse_cfg_options, parse_frame_counts
from videoccam.evaluation.grounding import ContentWords, ExactMatch
from videoccam.evaluation.temporal_ablation import DEFAULT_CONFIG, ROOT, plot_results, run_ablation
from videoccam.synthetic.shapes import CONTENT_VOCABULARIES, generate_temporal
from videoccam.synthetic.tiny_models import make_tiny_models


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--train", help="training data (json/jsonl in the project's format)")
    parser.add_argument("--test", help="test data: single-question media records (optional `task` field)")
    parser.add_argument("--root", help="folder the media paths of --train / --test are relative to")
    parser.add_argument("--train-frames", type=int, default=16, help="frames per training video (default: 16)")
    parser.add_argument("--eval-frames", default="16,64", type=parse_frame_counts,
                        help="comma-separated frame counts to evaluate at (default: 16,64)")
    parser.add_argument("--out", default="work_dirs/ablate_temporal", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training and data seed (default: 0)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (default: the tiny "
                        "temporal recipe, configs/tiny/videoccam_tiny_qwen2_temporal.py)")
    parser.add_argument("--num-train", type=int, default=1000, help="generated training videos (default: 1000)")
    parser.add_argument("--num-test", type=int, default=200, help="generated test videos (default: 200)")
    parser.add_argument("--batch-size", type=int, default=32, help="questions per generation batch (default: 32)")
    parser.add_argument("--no-feature-cache", action="store_true",
                        help="decode and encode the frames every step instead of caching the frozen SigLIP's "
                        "features in OUT/feature_cache (needed when the config trains the vision tower)")
    parser.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", default=None,
                        help="config overrides for both variants, e.g. train_cfg.max_epochs=2")
    args = parser.parse_args(argv)
    quiet.install()
    given = [args.train, args.test, args.root]
    if any(given) and not all(given):
        parser.error("give --train, --test and --root together (or none of them to generate the temporal task)")
    out = Path(args.out)
    start = time.time()
    rule = ExactMatch() if any(given) else ContentWords(CONTENT_VOCABULARIES)
    if not any(given):
        data = generate_temporal(out / "data", num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                                 frames=max(64, *args.eval_frames))  # fmt: skip
        args.train, args.test, args.root = str(data.train_json), str(data.test_json), str(data.root)
        print(f"temporal task: {data.num_train} training and {data.num_test} test videos in {data.root}"
              + (" (existing)" if data.skipped else ""))  # fmt: skip
    options = parse_cfg_options(args.cfg_options) or {}
    default_models = "model.llm.pretrained_model_name_or_path" not in options
    if Path(args.config).resolve() == DEFAULT_CONFIG.resolve() and default_models:
        make_tiny_models(ROOT / "work_dirs/tiny_models", names=("siglip", "qwen2"))  # the tiny config's models
    try:
        result = run_ablation(
            args.train, args.test, args.root, out, config=args.config, train_frames=args.train_frames,
            eval_frames=args.eval_frames, seed=args.seed, cfg_options=options,
            batch_size=args.batch_size, feature_cache=None if args.no_feature_cache else out / "feature_cache",
            rule=rule,
        )  # fmt: skip
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        print(f"ablation failed: {error}", file=sys.stderr)
        return 1
    print(result.table())
    summary = json.loads((out / "results.json").read_text())
    print("scored by: " + "; ".join(f"{task}: {rule}" for task, rule in summary["rules"].items()))
    png = plot_results(result, out / "results.png")
    print(f"wrote {out / 'results.json'} and {png} in {time.time() - start:.0f} s")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("per_task", "rules")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
