"""The `mt` command: train, eval, translate, align."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from mt.errors import MTError
from mt.textio import arrived_lines, decode_line, one_line

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
  export --run DIR [--quantization int8]
                           a Transformer run as a CTranslate2 model (DIR/ctranslate2) for
                           --engine ctranslate2 (pip install 'mt[fast]')
  serve --run DIR [--port 8000]
                           an HTTP server: POST /translate, a page at / that shows the alignment
                           (pip install 'mt[serve]')
"""


class UserError(MTError):
    """An error in the command's arguments or input."""


class Terminated(Exception):
    """SIGTERM arrived: stop as for Ctrl-C."""


def raise_terminated(signum, frame) -> None:
    raise Terminated


def fail(error: Exception) -> None:
    print(f"mt: error: {error}", file=sys.stderr)
    sys.exit(1)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {value}")
    return value


def train_command(argv: list[str]) -> None:
    import hydra
    from omegaconf import DictConfig

    from mt.config import CONF_DIR

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def run(cfg: DictConfig) -> float | None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from mt import distributed, pipeline
        from mt.evaluate import evaluate_run
        from mt.process import resolve_device
        from mt.run import RunLock, best_dev_score
        from mt.train import TrainingInterrupted

        try:
            pipeline.check_config(cfg)
            processes = distributed.processes_to_start(
                cfg.train.processes, resolve_device(cfg.device)
            )
            if processes > 1:
                if HydraConfig.get().mode == RunMode.MULTIRUN:
                    if cfg.train.processes != "auto":
                        raise MTError(
                            f"train.processes={cfg.train.processes} with -m: a sweep trains its "
                            "runs one process each (torchrun ... -m mt train, one run at a time)"
                        )
                else:
                    distributed.launch(processes, argv)
            # the lock covers the evaluation too: a second `mt train` of this run waits for nothing
            with RunLock(cfg.run_dir) if distributed.is_main() else contextlib.nullcontext():
                run_dir = pipeline.train_pipeline(cfg)
                main = distributed.is_main()
                # every rank leaves together; the evaluation is rank 0's alone
                distributed.shutdown(together=True)
                if not main:
                    return None
                evaluate_run(run_dir, device=cfg.device)
        except distributed.PeerFailed:
            sys.exit(1)  # rank 0 said why
        except TrainingInterrupted as e:
            if distributed.is_main():
                print(f"mt: {e}", file=sys.stderr)
            sys.exit(128 + signal.Signals[e.signal_name].value)
        except (MTError, FileNotFoundError) as e:
            fail(e)
        finally:
            distributed.shutdown()
        # the sweeper's objective: the best dev score, never a test score (sweeps tune on dev)
        return best_dev_score(run_dir)

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
    parser.add_argument(
        "--beam", type=positive_int, help="beam size (default: the run's decode.beam_size)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        help="alpha of log p / length^alpha (default: the run's decode.length_penalty)",
    )
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--other-corpus",
        action="store_true",
        help="score the run although its corpus, prepared now, differs from the one it trained on",
    )
    args = parser.parse_args(argv)
    from mt.evaluate import evaluate_run
    from mt.process import setup_logging

    setup_logging()
    try:
        results = evaluate_run(
            args.run,
            args.split,
            args.beam,
            args.checkpoint,
            args.device,
            other_corpus=args.other_corpus,
            length_penalty=args.length_penalty,
        )
    except (MTError, FileNotFoundError) as e:
        fail(e)
    for split, s in results.items():
        print(
            f"{split}: BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  TER {s['ter']:.2f}  "
            f"tok-lc BLEU {s['bleu_tok_lc']:.2f}  ({s['sentences']} sentences, beam {s['beam_size']})"
        )
        print(f"  {s['signatures']['bleu']}")


def add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=["torch", "ctranslate2"],
        default="torch",
        help="torch: mt's own decoding; ctranslate2: the run's CTranslate2 export (`mt export`)",
    )


def translate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mt translate",
        description="Translate sentences given as arguments, or stdin line by line (each line is "
        "answered as soon as it arrives).",
    )
    parser.add_argument("sentences", nargs="*", help="sentences to translate (none: read stdin)")
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument(
        "--beam",
        type=positive_int,
        help="beam size (1: greedy; default: the run's decode.beam_size)",
    )
    parser.add_argument(
        "--nbest",
        type=positive_int,
        default=1,
        help="print the K best translations as 'index ||| translation ||| score'",
    )
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    add_engine(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="sentences decoded together (default: the run's decode.batch_size)",
    )
    parser.add_argument(
        "--strategy",
        choices=["greedy", "beam", "sample"],
        help="decoding strategy (default: the run's decode.strategy)",
    )
    parser.add_argument(
        "--temperature", type=positive_float, help="sampling: < 1 sharper, > 1 flatter"
    )
    parser.add_argument(
        "--top-k", type=positive_int, help="sampling: draw among the k most probable tokens"
    )
    parser.add_argument(
        "--top-p", type=probability, help="sampling: draw within this much probability mass"
    )
    return parser


def translate_options(translator, args: argparse.Namespace):
    """The run's decoding options with the command line's; a contradiction is an error."""
    return translator.options(
        beam=args.beam,
        nbest=args.nbest,
        strategy=args.strategy,
        batch_size=args.batch_size,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
    )


def load_translator(args: argparse.Namespace):
    from mt.translator import Translator

    return Translator.load(args.run, args.checkpoint, args.device, args.engine)


def translate_command(argv: list[str]) -> None:
    args = translate_parser().parse_args(argv)
    if any(not s.strip() for s in args.sentences):
        fail(UserError("an empty sentence was given to translate"))

    # SIGTERM as for Ctrl-C: stop after the lines already written
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        translator = load_translator(args)
        options = translate_options(translator, args)
        if args.sentences:
            translate_lines(translator, args.sentences, 0, options)
            return
        if sys.stdin.isatty():
            print("mt: type a sentence and Enter; Ctrl-D ends", file=sys.stderr)
        done = 0
        for raw_lines in arrived_lines(sys.stdin.fileno(), options.batch_size):
            lines = [decode_line(raw, done + i + 1) for i, raw in enumerate(raw_lines)]
            done = translate_lines(translator, lines, done, options)
    except (MTError, FileNotFoundError) as e:
        fail(e)
    except KeyboardInterrupt:
        sys.exit(130)
    except Terminated:
        sys.exit(128 + signal.SIGTERM)
    except BrokenPipeError:
        sys.stderr.close()


def translate_lines(translator, lines: list[str], done: int, options) -> int:
    """Translate `lines` (inputs done+1, done+2, ...) and print one line each (nbest: K lines each);
    returns the number of inputs done."""
    for n, line in enumerate(lines, start=done + 1):
        if unknown := translator.tokenizer.unknown_source_chars(line):
            shown = " ".join(repr(c)[1:-1] if not c.isprintable() else c for c in unknown)
            print(
                f"mt: warning: input {n}: not in the vocabulary, read as <unk>: {shown}",
                file=sys.stderr,
            )
    for translation in translator.stream(lines, options, first_number=done + 1):
        for c in translation.nbest:
            text = one_line(c.text)
            print(f"{done} ||| {text} ||| {c.score:.4f}" if options.nbest > 1 else text)
        done += 1
    sys.stdout.flush()
    return done


def layers(text: str) -> int | list[int]:
    """argparse type: a layer (-1) or layers to average (1,2)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a layer number or a list like 1,2; not {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def align_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mt align",
        description="Show which source words the model attends to for each target word: a heatmap and "
        "the hard alignment in Pharaoh 'source-target' format. With --src and --tgt, align a whole "
        "parallel corpus (forced decoding, batched) and, with --gold, score it (AER).",
    )
    parser.add_argument("sentence", nargs="?", help="source sentence")
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument(
        "--target", help="align this translation (forced decoding) instead of the model's own"
    )
    parser.add_argument(
        "-o",
        "--output",
        help="a sentence: write the heatmap to this PNG file (default: draw it here); a corpus: "
        "write the links to this file (default: stdout)",
    )
    parser.add_argument(
        "--src", help="source sentences, one per line, words separated by spaces (kept as given)"
    )
    parser.add_argument("--tgt", help="their translations, one per line, as --src")
    parser.add_argument(
        "--gold",
        help="gold alignments of --src/--tgt: Pharaoh lines (i-j sure, i?j or ipj possible) or "
        "the NAACL 2003 .wa format; reports AER, precision and recall",
    )
    parser.add_argument(
        "--gold-one-based", action="store_true", help="the Pharaoh gold numbers words from 1"
    )
    parser.add_argument(
        "--reverse-run",
        help="a run trained in the other direction: both directions combined (--symmetrize)",
    )
    parser.add_argument(
        "--untokenize",
        action="store_true",
        help="corpus: the files are tokenized, lower-cased text (as gold alignment sets are); the "
        "model reads it as ordinary text (French contractions restored, sentence case) and each "
        "given word gets the links of what it became",
    )
    parser.add_argument(
        "--symmetrize",
        choices=["intersect", "union", "grow-diag", "grow-diag-final", "soft"],
        default="grow-diag-final",
        help="how --reverse-run is combined: its hard links with the forward ones (intersect, "
        "union, grow-diag, grow-diag-final), or its soft weights (soft: the geometric mean of both "
        "directions' weights, links read from it by --links) (default: grow-diag-final)",
    )
    parser.add_argument(
        "--method",
        choices=["attention", "shift"],
        help="attention: the row of the step that predicts a word; shift: of the step that reads "
        "it (shift-att) (default: the run's model.align_method)",
    )
    parser.add_argument(
        "--links",
        choices=["argmax", "mutual", "grow-diag", "grow-diag-final"],  # alignment.LINK_RULES
        help="hard links: argmax, each target word to the source word it attends most; mutual, "
        "only links strongest both ways; grow-diag(-final), the mutual links grown towards the "
        "rows' and columns' strongest (default: the run's model.align_links)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="WEIGHT",
        help="also link every pair whose weight (after --diagonal; with --reverse-run, both "
        "directions' agreement, added to the symmetrized links) is at least WEIGHT, 0 to 1; 0: "
        "none (default: the run's model.align_threshold)",
    )
    parser.add_argument(
        "--diagonal",
        type=float,
        metavar="STRENGTH",
        help="read the attention times a diagonal prior exp(-STRENGTH |i/S - j/T|), as fast_align "
        "does; 0: none (default: the run's model.align_prior)",
    )
    parser.add_argument(
        "--adapt",
        type=int,
        metavar="EPOCHS",
        help="corpus: first train the model this many passes over the --src/--tgt pairs, with its "
        "translation loss only (never --gold), as statistical aligners learn from the corpus they "
        "align; the run's files are not changed; 0: none (default: the run's model.align_adapt)",
    )
    parser.add_argument(
        "--adapt-lr",
        type=float,
        metavar="LR",
        help="learning rate of --adapt (default: the run's model.align_adapt_lr)",
    )
    parser.add_argument(
        "--adapt-agreement",
        type=float,
        metavar="WEIGHT",
        help="with --reverse-run: adapt both directions together, adding WEIGHT times the squared "
        "difference of their word alignments to their losses, so that each learns the links the "
        "other sees too; 0: each on its own (default: the run's model.align_adapt_agreement)",
    )
    parser.add_argument(
        "--adapt-guided",
        type=float,
        metavar="WEIGHT",
        help="--adapt also trains the attention the model aligns with towards eflomal's links of "
        "the --src/--tgt pairs, learnt together with the run's training split (never --gold; "
        "needs eflomal and the run's corpus), WEIGHT on that alignment loss; 0: not guided "
        "(default: the run's model.align_adapt_guided)",
    )
    parser.add_argument(
        "--adapt-guide",
        choices=["intersect", "union", "grow-diag", "grow-diag-final"],  # alignment.SYMMETRIZATIONS
        help="--adapt-guided: how eflomal's two directions make the guiding links (default: the "
        "run's model.align_adapt_guide)",
    )
    parser.add_argument(
        "--beam",
        type=positive_int,
        help="beam size of the model's translation (default: the run's decode.beam_size)",
    )
    parser.add_argument(
        "--layer",
        type=layers,
        help="Transformer: cross-attention layer to read, or layers to average (1,2) "
        "(default: model.align_layer)",
    )
    parser.add_argument(
        "--head", type=int, help="Transformer: one head instead of the heads' average"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help="corpus: sentence pairs aligned together"
    )
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    add_engine(parser)
    return parser


def align_command(argv: list[str]) -> None:
    args = align_parser().parse_args(argv)
    corpus = args.src is not None or args.tgt is not None
    if corpus and (args.sentence is not None or args.target is not None):
        fail(UserError("give a SENTENCE (and --target) or --src and --tgt, not both"))
    if corpus and (args.src is None or args.tgt is None):
        fail(UserError("a corpus needs both --src and --tgt"))
    if not corpus and args.sentence is None:
        fail(UserError("give a SENTENCE to align, or --src and --tgt for a corpus"))
    adapting = any(a is not None for a in (args.adapt, args.adapt_agreement, args.adapt_guided))
    if not corpus and (args.gold or args.untokenize or adapting):
        fail(UserError("--gold, --untokenize and --adapt work on a corpus: give --src and --tgt"))
    if args.adapt_agreement and not args.reverse_run:
        fail(UserError("--adapt-agreement adapts both directions together: give --reverse-run"))
    if corpus:
        align_corpus(args)
        return
    try:
        translator = load_translator(args)
        soft = args.reverse_run and args.symmetrize == "soft"
        alignment = translator.align(
            args.sentence,
            args.target,
            beam=args.beam,
            layer=args.layer,
            head=args.head,
            method=args.method,
            prior=0.0 if soft else args.diagonal,  # soft: on the agreement of both directions
            links=args.links,
            threshold=args.threshold,
        )
        links = alignment.links
        if args.reverse_run:
            alignment, links = combine_directions(args, translator, alignment)
    except (MTError, FileNotFoundError) as e:
        fail(e)
    print(alignment.translation)
    if args.output:
        alignment.save_png(args.output, title=f"{args.sentence} → {alignment.translation}")
        print(f"heatmap: {args.output}")
    else:
        print(alignment.terminal())
    print(" ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda link: (link[1], link[0]))))


def combine_directions(args: argparse.Namespace, translator, alignment):
    """A sentence's alignment and the reverse run's alignment of the same words the other way,
    combined as --symmetrize says -> (the alignment to draw, its links): soft draws the agreement
    (weighted by the diagonal prior) and reads its links; the others draw the forward attention
    and symmetrize the hard links."""
    from mt import alignment as al
    from mt.translator import Translator

    soft = args.symmetrize == "soft"
    reverse = Translator.load(args.reverse_run, args.checkpoint, args.device, args.engine)
    (backward,) = reverse.align_words(
        [alignment.target], [alignment.source], method=args.method,
        prior=0.0 if soft else args.diagonal, links=args.links, threshold=args.threshold,
    )  # fmt: skip
    reading = translator.read(args.method, args.diagonal, args.links, args.threshold)
    if soft:
        both = reading.words(al.agreement(alignment, backward))
        return both, both.links
    return alignment, al.combine(alignment, backward, args.symmetrize, reading.threshold)


def adaptation_guide(
    translator, args: argparse.Namespace, src_words: list, tgt_words: list
) -> tuple[list | None, float]:
    """Guided adaptation's word links of the pairs (eflomal's, learnt with the run's training
    split) and weight: the run's model.align_adapt_guided unless --adapt-guided; no links when the
    weight or the passes are 0."""
    model_cfg = translator.cfg.model
    weight = args.adapt_guided
    if weight is None:
        weight = float(model_cfg.get("align_adapt_guided", 0.0))
    passes = args.adapt if args.adapt is not None else int(model_cfg.get("align_adapt", 0))
    if weight < 0:
        raise UserError(f"--adapt-guided {weight}: a weight of 0 or more")
    if not (weight and passes):
        return None, weight
    return translator.guide_links(src_words, tgt_words, args.adapt_guide), weight


def align_corpus(args: argparse.Namespace) -> None:
    """`mt align --src --tgt [--gold] [--reverse-run]`: Pharaoh links per line, AER with --gold."""
    from mt import alignment as al
    from mt.checkpoint import atomic_write_text
    from mt.translator import Translator

    try:
        sources, targets = al.read_sentences(args.src), al.read_sentences(args.tgt)
        if len(sources) != len(targets):
            raise UserError(f"{args.src} has {len(sources)} lines but {args.tgt} {len(targets)}")
        src_words, tgt_words = [s.split() for s in sources], [t.split() for t in targets]
        gold = None
        if args.gold:
            try:
                gold = al.read_gold(args.gold, len(sources), args.gold_one_based)
            except ValueError as e:
                raise UserError(str(e)) from None
        translator = load_translator(args)
        options = dict(layer=args.layer, head=args.head)
        soft = args.reverse_run and args.symmetrize == "soft"
        common = dict(
            batch_size=args.batch_size,
            untokenize=args.untokenize,
            method=args.method,
            # soft: the prior weighs the agreement of both directions, not each one
            prior=0.0 if soft else args.diagonal,
            links=args.links,
            threshold=args.threshold,
        )
        adapting = dict(
            epochs=args.adapt,
            lr=args.adapt_lr,
            untokenize=args.untokenize,
            report=lambda line: print(line, file=sys.stderr, flush=True),
        )
        reverse = None
        if args.reverse_run:
            reverse = Translator.load(args.reverse_run, args.checkpoint, args.device, args.engine)
        agreement = args.adapt_agreement
        if agreement is None:
            agreement = float(translator.cfg.model.get("align_adapt_agreement", 0.0))
        guide, weight = adaptation_guide(translator, args, src_words, tgt_words)
        adapting.update(guided_weight=weight)
        if reverse is not None and agreement:
            translator.adapt_jointly(
                reverse, src_words, tgt_words, agreement=agreement, method=args.method,
                guide=guide, **adapting, **options,
            )  # fmt: skip
        else:
            translator.adapt(src_words, tgt_words, guide=guide, **adapting)
            if reverse is not None:
                backward = None if guide is None else [{(j, i) for i, j in g} for g in guide]
                reverse.adapt(tgt_words, src_words, guide=backward, **adapting)
        found = translator.align_words(src_words, tgt_words, **common, **options)
        links = [set(a.links) for a in found]
        if reverse is not None:
            backward = reverse.align_words(tgt_words, src_words, **common)
            reading = translator.read(args.method, args.diagonal, args.links, args.threshold)
            if soft:
                links = [
                    set(reading.words(al.agreement(f, b)).links)
                    for f, b in zip(found, backward, strict=True)
                ]
            else:
                links = [
                    al.combine(f, b, args.symmetrize, reading.threshold)
                    for f, b in zip(found, backward, strict=True)
                ]
    except (MTError, FileNotFoundError) as e:
        fail(e)
    text = "".join(" ".join(f"{i}-{j}" for i, j in sorted(pair)) + "\n" for pair in links)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    if gold is not None:
        out = sys.stderr if not args.output else sys.stdout
        if guide is not None:  # the teacher of guided adaptation, scored the same way
            print(f"the guide of the adaptation: AER {scores_line(al, guide, gold)}", file=out)
        print(f"AER {scores_line(al, links, gold)}", file=out)


def scores_line(al, links: list, gold: tuple) -> str:
    """AER, precision and recall of `links` against `gold` (sure, possible), in percent."""
    s = al.alignment_scores(links, *gold)
    return (
        f"{100 * s['aer']:.1f}  precision {100 * s['precision']:.1f}  recall "
        f"{100 * s['recall']:.1f}  ({len(links)} sentence pairs, {s['links']} links)"
    )


def export_command(argv: list[str]) -> None:
    from mt.ct2 import QUANTIZATIONS

    parser = argparse.ArgumentParser(
        prog="mt export",
        description="Export a Transformer run for fast CPU inference with CTranslate2 "
        "(pip install 'mt[fast]'); then decode it with --engine ctranslate2.",
    )
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument("--format", choices=["ctranslate2"], default="ctranslate2")
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="float32",
        help="weight type of the exported model (default: float32)",
    )
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument(
        "-o", "--output", help="model directory to write (default: <run>/ctranslate2)"
    )
    args = parser.parse_args(argv)
    from mt.ct2 import export
    from mt.run import load_run

    try:
        folder = export(load_run(args.run, args.checkpoint, "cpu"), args.output, args.quantization)
    except (MTError, FileNotFoundError) as e:
        fail(e)
    print(f"exported {args.run} ({args.quantization}) to {folder}")


def serve_command(argv: list[str]) -> None:
    from mt.serve import serve_command

    serve_command(argv)


COMMANDS = {
    "train": train_command,
    "eval": eval_command,
    "translate": translate_command,
    "align": align_command,
    "export": export_command,
    "serve": serve_command,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
