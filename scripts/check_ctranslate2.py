"""Does the CTranslate2 export translate as mt does? Decodes a run's whole test split with both
engines (greedy and beam, batch 64) and prints the share of identical lines, both BLEUs and every
line that differs with its two scores. Exports the run into a temporary directory first.

    python scripts/check_ctranslate2.py --run runs/multi30k_en_de-transformer_tiny [--beam 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from bench_inference import test_split  # noqa: E402

from mt import metrics  # noqa: E402
from mt.ct2 import export  # noqa: E402
from mt.run import load_run  # noqa: E402
from mt.translator import Translator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--sentences", type=int, help="only the first N (default: all)")
    args = parser.parse_args()

    sources, references, corpus, tgt_lang = test_split(Path(args.run), args.sentences)
    ours = Translator.load(args.run, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = export(load_run(args.run, device="cpu"), Path(tmp) / "ct2")
        theirs = Translator.load(args.run, engine="ctranslate2", export_dir=folder)
        for beam in (1, args.beam):
            a = ours.translate(sources, beam=beam, batch_size=64)
            b = theirs.translate(sources, beam=beam, batch_size=64)
            same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
            bleu = [metrics.score([t.text for t in r], references, tgt_lang, ["bleu"])["bleu"]
                    for r in (a, b)]  # fmt: skip
            search = "greedy" if beam == 1 else f"beam {beam}"
            print(
                f"{corpus}, {search}: identical {same}/{len(sources)}; "
                f"BLEU mt {bleu[0]:.2f}, CTranslate2 {bleu[1]:.2f}"
            )
            for x, y in zip(a, b, strict=True):
                if x.text != y.text:
                    print(
                        f"  mt          {x.score:.4f}  {x.text}\n  CTranslate2 {y.score:.4f}  {y.text}"
                    )


if __name__ == "__main__":
    main()
