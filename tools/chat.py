"""Chat with a Video-CCAM model about a video or an image, one-shot or interactively, on CPU or GPU.

Examples::

    # one question, answer printed (streamed) to stdout
    python tools/chat.py --model work_dirs/hf_model --video clip.mp4 --prompt "What happens first?"
    python tools/chat.py --config configs/x.py --checkpoint work_dirs/x/iter_500.pth \\
        --image a.jpg --prompt "Describe it."

    # interactive multi-turn chat (commands: /video PATH, /image PATH, /reset, /help, /quit)
    python tools/chat.py --model work_dirs/hf_model --video clip.mp4

The prompt gets ``<video>\\n`` / ``<image>\\n`` in front when it has no placeholder and media is given. Media
belongs to the first user turn; loading new media starts a new conversation. Model loading messages and errors
go to stderr, answers to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from videoccam import quiet, xtuner_compat
from videoccam.checkpoint import UnsafeCheckpointError
from videoccam.cli import (
    add_model_args,
    add_sampling_args,
    check_model_args,
    generation_settings,
    load_model_from_args,
    media_from_args,
)
from videoccam.dataset.video_io import MediaLoadError
from videoccam.inference.chat import ChatSession, GenerationSettings, media_error_message

INTERACTIVE_HELP = """\
Commands:
  /video PATH   load a video (file, frame folder or GIF) and start a new conversation
  /image PATH   load an image and start a new conversation
  /reset        start a new conversation (keeps the loaded media)
  /clear        start a new conversation without media
  /help         this help
  /quit         leave (also /exit or end of input)
Anything else is sent to the model."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=INTERACTIVE_HELP)
    add_model_args(parser)
    media = parser.add_mutually_exclusive_group()
    media.add_argument("--video", help="video file, frame folder or GIF")
    media.add_argument("--image", help="image file")
    parser.add_argument("--prompt", help="ask this one question, print the answer and exit; "
                                         "without it, chat interactively on stdin")
    add_sampling_args(parser)
    parser.add_argument("--no-stream", action="store_true", help="print each answer when it is complete")
    return parser


def respond(session: ChatSession, text: str, settings: GenerationSettings, stream: bool, out: TextIO) -> str:
    """Send ``text``; print the reply to ``out`` (piece by piece when ``stream``) and return it."""
    if not stream:
        reply = session.ask(text, settings)
        out.write(reply + "\n")
        out.flush()
        return reply
    printed = ""
    reply = ""
    for reply in session.stream(text, settings):
        # The last item is the reply as decoded in full; print only what the stream has not shown yet.
        if reply.startswith(printed):
            out.write(reply[len(printed):])
        printed = reply
        out.flush()
    out.write("\n")
    out.flush()
    return reply


def interactive(session: ChatSession, args: argparse.Namespace, settings: GenerationSettings,
                stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """The read-eval-print loop; returns the exit status."""
    prompt_marker = "User: "
    if session.media is not None:
        stderr.write(f"[loaded {session.media.describe()}]\n")
    stderr.write("Type a question, /help for commands, /quit to leave.\n")
    while True:
        stdout.write(prompt_marker)
        stdout.flush()
        line = stdin.readline()
        if not line:  # end of input
            stdout.write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        command, _, rest = text.partition(" ")
        rest = rest.strip()
        if command in ("/quit", "/exit"):
            return 0
        if command == "/help":
            stderr.write(INTERACTIVE_HELP + "\n")
            continue
        if command == "/reset":
            session.reset()
            stderr.write("[new conversation]\n")
            continue
        if command == "/clear":
            session.set_media(None)
            stderr.write("[new conversation, no media]\n")
            continue
        if command in ("/video", "/image"):
            if not rest:
                stderr.write(f"error: {command} needs a path, e.g. {command} clip.mp4\n")
                continue
            try:
                media = media_from_args(args, os.path.expanduser(rest), command[1:])
            except MediaLoadError as error:
                stderr.write(f"error: {media_error_message(error)}\n")
                continue
            except ValueError as error:
                stderr.write(f"error: {error}\n")
                continue
            session.set_media(media)
            stderr.write(f"[loaded {media.describe()}; new conversation]\n")
            continue
        if text.startswith("/") and " " not in command and command[1:].isalpha():
            stderr.write(f"error: unknown command {command}; /help lists the commands\n")
            continue
        try:
            session.user_content(text)  # validate before printing the reply marker
        except ValueError as error:
            stderr.write(f"error: {error}\n")
            continue
        stdout.write("Assistant: ")
        stdout.flush()
        try:
            respond(session, text, settings, stream=not args.no_stream, out=stdout)
        except ValueError as error:  # e.g. more frames than the projector has queries
            stdout.write("\n")
            stderr.write(f"error: {error}\n")


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run the chat tool; returns the exit status (0 ok, 1 runtime failure, 2 bad arguments or media)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        check_model_args(args)
        settings = generation_settings(args)
        if args.num_frames < 1:
            raise ValueError(f"--num-frames must be >= 1, got {args.num_frames}")
        media = None
        # Media first: a wrong path fails in a second, not after loading the model.
        if args.video:
            media = media_from_args(args, args.video, "video")
        elif args.image:
            media = media_from_args(args, args.image, "image")
        if args.prompt is not None and not args.prompt.strip():
            raise ValueError("--prompt is empty")
    except MediaLoadError as error:
        stderr.write(f"error: {media_error_message(error)}\n")
        return 2
    except (ValueError, FileNotFoundError) as error:
        stderr.write(f"error: {error}\n")
        return 2

    quiet.install()
    xtuner_compat.install()  # entry point: --config loads a training config (xtuner, mmengine)
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    stderr.write(f"loading model from {args.model or f'{args.config} + {args.checkpoint}'} ...\n")
    stderr.flush()
    try:
        model, tokenizer, image_processor = load_model_from_args(args)
    except UnsafeCheckpointError as error:
        stderr.write(f"error: {error}\n")
        return 2
    session = ChatSession(model, tokenizer, image_processor)
    session.set_media(media)

    if args.prompt is not None:
        try:
            respond(session, args.prompt, settings, stream=not args.no_stream, out=stdout)
        except ValueError as error:
            stderr.write(f"error: {error}\n")
            return 2
        return 0
    return interactive(session, args, settings, stdin, stdout, stderr)


if __name__ == "__main__":
    raise SystemExit(main())
