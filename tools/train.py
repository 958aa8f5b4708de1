"""Run `xtuner train` in this process, with the CPU-compatibility shim, and return its real exit status.

Same arguments as `xtuner train` (config, --work-dir, --deepspeed, --resume, --seed, --cfg-options,
--launcher), plus `--feature-cache DIR`: stage 1 with the frozen-SigLIP feature cache in DIR
(videoccam/dataset/feature_cache.py; fill it first with tools/precompute_features.py, or let the first epoch
fill it). The stock `xtuner` CLI starts training in a subprocess and exits 0 even when it failed; this
wrapper does not. Multi-process: `torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch`.

Checkpoints (`--resume`, `load_from`, `model.pretrained_pth`) are read weights-only: a file that would run code
when unpickled is refused with an error naming it (videoccam/checkpoint.py), exit status 1.

When training fails, the traceback is also written into the run's log (`<work_dir>/<timestamp>/<timestamp>.log`)
and the last lines printed are the error and the path of that log; the exit status is 1. When it ends, the last
lines printed are the number of iterations, the loss of the first and the last one, the checkpoint written and
the log. Known, harmless notices of the libraries are not printed (videoccam/quiet.py lists them).
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

from videoccam import quiet, xtuner_compat


def with_feature_cache(argv: list[str], folder: str) -> list[str]:
    """``argv`` without ``--feature-cache DIR``: the config, with its ``--cfg-options``, dumped to ``folder`` (same
    file name, so the default work dir is unchanged) with the cache on; other arguments as they were.

    Raises:
        ValueError: if the config trains its vision tower (see ``enable_feature_cache``).
    """
    if "--feature-cache" not in argv:
        return argv
    from videoccam.cli import parse_cfg_options
    from videoccam.config import load_config
    from videoccam.dataset.feature_cache import enable_feature_cache

    i = argv.index("--feature-cache")
    cache_dir, rest = argv[i + 1], argv[:i] + argv[i + 2 :]
    options = []
    if "--cfg-options" in rest:
        j = rest.index("--cfg-options") + 1
        while j < len(rest) and not rest[j].startswith("--"):
            options.append(rest[j])
            j += 1
    cfg = enable_feature_cache(load_config(rest[0], parse_cfg_options(options)), cache_dir)
    dumped = Path(folder) / Path(rest[0]).name
    cfg.dump(str(dumped))
    return [str(dumped), *rest[1:]]


def _say(lines: list[str], stream=None) -> None:
    for line in lines:
        print(f"train: {line}", file=stream or sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    quiet.install()
    xtuner_compat.install()
    from mmengine.dist import get_rank
    from xtuner.tools import train as xtuner_train

    from videoccam.engine.run_log import RunWatcher

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
    folder = tempfile.TemporaryDirectory(prefix="videoccam_train_")
    try:
        argv = with_feature_cache(argv, folder.name)
    except ValueError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    saved = sys.argv
    sys.argv = ["xtuner-train", *argv]
    run = RunWatcher()
    try:
        xtuner_train.main()
    except SystemExit as e:  # argparse --help / usage errors
        return int(e.code or 0)
    except Exception as error:  # noqa: BLE001 - any failure: traceback, then the error and the log as last lines
        traceback.print_exc()
        run.record_failure(error)
        _say(run.failure_lines(error), sys.stderr)
        return 1
    finally:
        sys.argv = saved
        folder.cleanup()
    if get_rank() == 0:
        _say(run.summary_lines())
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
