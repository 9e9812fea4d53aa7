"""The `mt` command: train, eval, translate, align."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

CONF_DIR = Path(os.environ.get("MT_CONF_DIR", Path(__file__).resolve().parent.parent / "conf"))

USAGE = """usage: mt <command> [options]

commands:
  train [key=value ...]    prepare -> tokenize -> train -> evaluate, configured by Hydra (conf/);
                           e.g. mt train data=multi30k_en_de model=transformer_tiny train.max_steps=8000
                           (-m sweeps: mt train -m model=transformer,transformer_tiny)
  eval --run DIR           beam-search the run's test split(s); writes DIR/eval/<split>.hyp, .scores.json
  translate --run DIR [SENTENCE ...]
                           translate the sentences, or stdin line by line
  align --run DIR SENTENCE [--target T] [-o heatmap.png]
                           the attention alignment of a translation: heatmap and Pharaoh links
"""


class UserError(Exception):
    """An error the user can fix: reported as one line, without a traceback."""


def user_errors() -> tuple[type[Exception], ...]:
    from mt.checkpoint import CheckpointError
    from mt.data import DataError
    from mt.models import ModelConfigError
    from mt.pipeline import RunError
    from mt.train import TrainingError

    errors = (UserError, DataError, RunError, CheckpointError, TrainingError, ModelConfigError)
    return (*errors, FileNotFoundError)


class Terminated(Exception):
    """SIGTERM arrived: stop as for Ctrl-C."""


def raise_terminated(signum, frame) -> None:
    raise Terminated


def fail(error: Exception) -> None:
    print(f"mt: error: {error}", file=sys.stderr)
    sys.exit(1)


def train_command(argv: list[str]) -> None:
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def run(cfg: DictConfig) -> float | None:
        from mt import distributed, pipeline
        from mt.train import TrainingInterrupted

        try:
            run_dir = pipeline.train_pipeline(cfg)
            if not distributed.is_main():
                return None
            scores = pipeline.evaluate_run(run_dir, device=cfg.device)
        except TrainingInterrupted as e:
            if distributed.is_main():
                print(f"mt: {e}", file=sys.stderr)
            sys.exit(128 + signal.Signals[e.signal_name].value)
        except user_errors() as e:
            fail(e)
        finally:
            distributed.shutdown()
        return next(iter(scores.values()))["bleu"]

    sys.argv = ["mt train", *argv]
    run()


def eval_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="mt eval", description="Beam-search decode and score a run's test splits."
    )
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument(
        "--split", action="append", help="split to decode (default: data.test_splits); repeatable"
    )
    parser.add_argument("--beam", type=int, help="beam size (default: the run's decode.beam_size)")
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from mt import pipeline

    pipeline.setup_logging()
    try:
        results = pipeline.evaluate_run(
            args.run, args.split, args.beam, args.checkpoint, args.device
        )
    except user_errors() as e:
        fail(e)
    for split, s in results.items():
        print(
            f"{split}: BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  TER {s['ter']:.2f}  "
            f"tok-lc BLEU {s['bleu_tok_lc']:.2f}  ({s['sentences']} sentences, beam {s['beam_size']})"
        )
        print(f"  {s['signatures']['bleu']}")


def read_chunks(stream, size: int) -> Iterator[list[str]]:
    """Lines of `stream` (without line breaks) in lists of up to `size`."""
    chunk = []
    for line in stream:
        chunk.append(line.rstrip("\r\n"))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def translate_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="mt translate",
        description="Translate sentences given as arguments, or stdin line by line.",
    )
    parser.add_argument("sentences", nargs="*", help="sentences to translate (none: read stdin)")
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument(
        "--beam", type=int, help="beam size (1: greedy; default: the run's decode.beam_size)"
    )
    parser.add_argument(
        "--nbest",
        type=int,
        default=1,
        help="print the K best translations as 'index ||| translation ||| score'",
    )
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences decoded together")
    args = parser.parse_args(argv)
    if any(not s.strip() for s in args.sentences):
        fail(UserError("an empty sentence was given to translate"))
    from mt import pipeline

    # SIGTERM as for Ctrl-C: stop after the lines already written
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        run = pipeline.load_run(args.run, args.checkpoint, args.device)
        beam = args.beam or run.cfg.decode.beam_size
        if args.nbest > beam:
            raise UserError(f"--nbest {args.nbest} needs --beam of at least {args.nbest}")
        chunks = [args.sentences] if args.sentences else read_chunks(sys.stdin, args.batch_size)
        index = 0
        for chunk in chunks:
            for n, line in enumerate(chunk, start=index + 1):
                if unknown := run.tokenizer.unknown_source_chars(line):
                    print(
                        f"mt: warning: input {n}: not in the vocabulary, read as <unk>: {' '.join(unknown)}",
                        file=sys.stderr,
                    )
            for hyps in run.translate(
                chunk, beam_size=beam, nbest=args.nbest, batch_size=args.batch_size
            ):
                for h in hyps:
                    text = run.tokenizer.decode_tgt(h.tokens)
                    print(f"{index} ||| {text} ||| {h.score:.4f}" if args.nbest > 1 else text)
                index += 1
            sys.stdout.flush()
    except user_errors() as e:
        fail(e)
    except KeyboardInterrupt:
        sys.exit(130)
    except Terminated:
        sys.exit(128 + signal.SIGTERM)
    except BrokenPipeError:
        sys.stderr.close()


def align_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="mt align",
        description="Show which source words the model attends to for each target word: a heatmap and "
        "the hard alignment in Pharaoh 'source-target' format.",
    )
    parser.add_argument("sentence", help="source sentence")
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument(
        "--target", help="align this translation (forced decoding) instead of the model's own"
    )
    parser.add_argument(
        "-o", "--output", help="write the heatmap to this PNG file (default: draw it here)"
    )
    parser.add_argument(
        "--beam",
        type=int,
        help="beam size of the model's translation (default: the run's decode.beam_size)",
    )
    parser.add_argument(
        "--layer",
        type=int,
        help="Transformer: cross-attention layer to read (default: model.align_layer)",
    )
    parser.add_argument(
        "--head", type=int, help="Transformer: one head instead of the heads' average"
    )
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.sentence.strip():
        fail(UserError("an empty sentence was given to align"))
    from mt import pipeline

    try:
        run = pipeline.load_run(args.run, args.checkpoint, args.device)
        if args.layer is not None or args.head is not None:
            if run.cfg.model.arch != "transformer":
                raise UserError("--layer and --head apply to Transformer runs only")
            layers = len(run.model.decoder_layers)
            if args.layer is not None:
                if not -layers <= args.layer < layers:
                    raise UserError(f"--layer {args.layer}: the decoder has {layers} layers")
                run.model.align_layer = args.layer % layers
            if args.head is not None:
                if not 0 <= args.head < run.cfg.model.heads:
                    raise UserError(
                        f"--head {args.head}: the model has {run.cfg.model.heads} heads"
                    )
                run.model.align_head = args.head
        translation, score, alignment = run.align(
            args.sentence, args.target, args.beam or run.cfg.decode.beam_size
        )
    except user_errors() as e:
        fail(e)
    print(translation)
    if args.output:
        alignment.save_png(args.output, title=f"{args.sentence} → {translation}")
        print(f"heatmap: {args.output}")
    else:
        print(alignment.terminal())
    print(alignment.pharaoh())


COMMANDS = {
    "train": train_command,
    "eval": eval_command,
    "translate": translate_command,
    "align": align_command,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
