"""Gradio web demo: upload a video, image or GIF and chat with a Video-CCAM model about it.

Examples::

    bash tools/install.sh demo        # installs gradio (the `demo` extra)
    python tools/web_demo.py --model work_dirs/hf_model                        # http://127.0.0.1:7860
    python tools/web_demo.py --config configs/x.py --checkpoint work_dirs/x/iter_500.pth --port 8080

The page and its offline measures: videoccam/inference/web_demo.py.
"""

from __future__ import annotations

import argparse
import sys

from videoccam import quiet, xtuner_compat
from videoccam.checkpoint import UnsafeCheckpointError
from videoccam.cli import add_model_args, check_model_args, load_model_from_args
from videoccam.inference.web_demo import DemoBackend, OfflinePageMiddleware, build_demo, import_gradio


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    server.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (needs internet; off by default)")
    defaults = parser.add_argument_group("initial values of the page's controls")
    defaults.add_argument("--num-frames", type=int, default=16, help="frames per video (default 16)")
    defaults.add_argument("--sampling", choices=["uniform", "fps"], default="uniform")
    defaults.add_argument("--fps", type=float, default=1.0, help="rate for fps sampling (default 1.0)")
    defaults.add_argument("--max-new-tokens", type=int, default=512)
    defaults.add_argument("--temperature", type=float, default=0.7, help="used when sampling is on (default 0.7)")
    defaults.add_argument("--do-sample", action="store_true", help="turn sampling on (default: greedy)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the demo server; returns when it is stopped (0), or 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        check_model_args(args)
        if args.num_frames < 1:
            raise ValueError(f"--num-frames must be >= 1, got {args.num_frames}")
        if not 0 < args.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {args.port}")
        gr = import_gradio()
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    quiet.install()  # among its notices: gradio 5.50's announcements of gradio 6 (setup.py bounds gradio < 6)
    xtuner_compat.install()  # entry point: --config loads a training config (xtuner, mmengine)
    print(f"loading model from {args.model or f'{args.config} + {args.checkpoint}'} ...", file=sys.stderr, flush=True)
    try:
        model, tokenizer, image_processor = load_model_from_args(args)
    except UnsafeCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    demo = build_demo(DemoBackend(model, tokenizer, image_processor), args)
    demo.queue(default_concurrency_limit=1)
    print(f"gradio {gr.__version__}: serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    from starlette.middleware import Middleware

    demo.launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=False, show_api=False,
                show_error=True, quiet=False, ssr_mode=False,
                app_kwargs={"middleware": [Middleware(OfflinePageMiddleware)]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
