"""`mt serve`: a trained run behind HTTP (FastAPI + uvicorn; pip install 'mt[serve]').

    POST /translate  {"sentences": [...], "beam": 5, "nbest": 1, "align": false, "layer": null,
                      "head": null}  -> {"translations": [{"text", "score", "nbest", "alignment"}]}
    GET  /health     the run, its languages and what the page may choose (layers, heads)
    GET  /           a page: type a sentence, see the translation and where the model looked
    GET  /docs       the OpenAPI documentation

Requests that arrive together are decoded together: `Batcher` collects requests for up to
`max_wait_ms` (or until `max_batch` sentences wait), groups those with the same decoding options and
decodes each group as one batch on one worker thread, so concurrent clients share the model's
batched decoding instead of queueing one by one.
"""

# no `from __future__ import annotations`: FastAPI reads the request models from the signatures
import argparse
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources

from mt.errors import MTError
from mt.translator import Translation, Translator, TranslatorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond it the server answers 4xx and goes on serving."""

    max_sentences: int = 64
    max_chars: int = 1000
    max_beam: int = 16


@dataclass
class Job:
    key: tuple
    sentences: list[str]
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Dynamic batching: requests with equal decoding options that arrive within `max_wait_ms` of
    the first (up to `max_batch` sentences) are decoded as one batch."""

    def __init__(self, translator: Translator, max_batch: int = 64, max_wait_ms: float = 10.0):
        self.translator, self.max_batch, self.max_wait = translator, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt-decode")
        self.task: asyncio.Task | None = None
        self.batches = 0  # decoded batches, for /health

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def submit(self, sentences: list[str], **options) -> list[Translation]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Job(tuple(sorted(options.items())), sentences, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            # gather what arrives until the deadline; polled, since a get() cancelled by a timeout
            # can lose its item on some Python versions
            while sum(len(j.sentences) for j in jobs) < self.max_batch:
                try:
                    jobs.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, 0.001))
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                await self.decode(key, group)

    async def decode(self, key: tuple, group: list[Job]) -> None:
        sentences = [s for job in group for s in job.sentences]
        options = dict(key)
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: self.translator.translate(sentences, **options)
            )
        except Exception as e:  # every waiting request hears of it; the server goes on
            for job in group:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        self.batches += 1
        start = 0
        for job in group:
            if not job.future.done():  # a client that went away leaves a cancelled future
                job.future.set_result(results[start : start + len(job.sentences)])
            start += len(job.sentences)


def alignment_json(alignment) -> dict | None:
    if alignment is None:
        return None
    return {
        "source": alignment.source,
        "target": alignment.target,
        "weights": [[round(w, 4) for w in row] for row in alignment.weights.tolist()],
        "links": [list(link) for link in alignment.links],
        "pharaoh": alignment.pharaoh(),
    }


def create_app(
    translator: Translator,
    limits: Limits | None = None,
    max_batch: int = 64,
    max_wait_ms: float = 10.0,
):
    """The FastAPI application serving `translator`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse
    from pydantic import BaseModel, Field

    limits = limits or Limits()
    batcher = Batcher(translator, max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="mt",
        summary=f"Translation with {translator.dir.name}",
        lifespan=lifespan,
    )

    class TranslateRequest(BaseModel):
        sentences: list[str] = Field(
            description=f"sentences to translate (1 to {limits.max_sentences}, each at most "
            f"{limits.max_chars} characters)",
            examples=[["The black cat ate the mouse."]],
        )
        beam: int | None = Field(
            None, description="beam size; 1 is greedy search (default: the run's)"
        )
        nbest: int = Field(1, description="hypotheses per sentence (at most the beam)")
        align: bool = Field(False, description="add each translation's word alignment")
        layer: int | None = Field(
            None, description="Transformer: decoder layer read for alignments"
        )
        head: int | None = Field(None, description="Transformer: one head instead of the average")
        method: str | None = Field(
            None,
            description="how attention is read: attention (the step that predicts a word) or "
            "shift (the step that reads it); default: the run's model.align_method",
        )
        links: str | None = Field(
            None,
            description="how hard links are picked: argmax (each target word's strongest source "
            "word), mutual (only links strongest both ways), grow-diag or grow-diag-final (the "
            "mutual links grown towards the rows' and columns' strongest); default: "
            "model.align_links",
        )

    class Candidate(BaseModel):
        text: str
        score: float

    class Alignment(BaseModel):
        source: list[str]
        target: list[str]
        weights: list[list[float]] = Field(description="[target word][source word] attention")
        links: list[list[int]] = Field(description="hard links [source index, target index]")
        pharaoh: str

    class TranslationOut(BaseModel):
        text: str
        score: float
        nbest: list[Candidate]
        alignment: Alignment | None = None

    class TranslateResponse(BaseModel):
        translations: list[TranslationOut]

    def check(request: TranslateRequest) -> None:
        if not request.sentences:
            raise HTTPException(422, "sentences: give at least one sentence")
        if len(request.sentences) > limits.max_sentences:
            raise HTTPException(
                413,
                f"sentences: {len(request.sentences)} in one request; at most "
                f"{limits.max_sentences} (send several requests)",
            )
        for i, s in enumerate(request.sentences):
            if len(s) > limits.max_chars:
                raise HTTPException(
                    413, f"sentences[{i}]: {len(s)} characters; at most {limits.max_chars}"
                )
        if request.beam is not None and not 1 <= request.beam <= limits.max_beam:
            raise HTTPException(422, f"beam: {request.beam} is not in 1..{limits.max_beam}")
        if not 1 <= request.nbest <= (request.beam or limits.max_beam):
            raise HTTPException(
                422, f"nbest: {request.nbest} is not in 1..{request.beam or limits.max_beam}"
            )

    @app.post("/translate", response_model=TranslateResponse)
    async def translate(request: TranslateRequest) -> dict:
        """Translate sentences; with `align`, each best translation's word alignment."""
        check(request)
        options = dict(
            beam=request.beam,
            nbest=request.nbest,
            align=request.align,
            layer=request.layer,
            head=request.head,
            method=request.method,
            links=request.links,
        )
        if request.nbest > 1 and request.beam is None:
            options["strategy"] = "beam"
        try:
            results = await batcher.submit(request.sentences, **options)
        except (TranslatorError, MTError) as e:
            raise HTTPException(422, str(e)) from None
        return {
            "translations": [
                {
                    "text": t.text,
                    "score": t.score,
                    "nbest": [{"text": c.text, "score": c.score} for c in t.nbest],
                    "alignment": alignment_json(t.alignment),
                }
                for t in results
            ]
        }

    @app.get("/health")
    async def health() -> dict:
        """The model served and what may be chosen for its alignments."""
        cfg = translator.cfg
        transformer = cfg.model.arch == "transformer"
        reading = translator.read()
        return {
            "status": "ok",
            "run": translator.dir.name,
            "engine": translator.engine,
            "arch": cfg.model.arch,
            "src_lang": cfg.data.src_lang,
            "tgt_lang": cfg.data.tgt_lang,
            "beam": cfg.decode.beam_size,
            "layers": cfg.model.decoder_layers if transformer else 0,
            "heads": cfg.model.heads if transformer else 0,
            "align_layers": translator.engine == "torch" and transformer,
            "align_method": reading.method,
            "align_links": reading.links,
            "align_prior": reading.prior,
            "align_threshold": reading.threshold,
            "limits": limits.__dict__,
            "batches": batcher.batches,
        }

    page = resources.files("mt").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    return app


def serve_command(argv: list[str]) -> None:
    from mt.cli import fail, positive_int

    parser = argparse.ArgumentParser(
        prog="mt serve",
        description="Serve a run over HTTP: POST /translate, GET /health, a page at /, docs at /docs.",
    )
    parser.add_argument("--run", required=True, help="run directory (runs/<name>)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--checkpoint",
        help="best | last | averaged | a file in checkpoints/ (default: the run's decode.checkpoint)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--engine",
        choices=["torch", "ctranslate2"],
        default="torch",
        help="torch: mt's own decoding; ctranslate2: the run's CTranslate2 export (`mt export`)",
    )
    parser.add_argument(
        "--max-batch", type=positive_int, default=64, help="sentences decoded together at most"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long the first request of a batch waits for others (default 10)",
    )
    parser.add_argument("--max-sentences", type=positive_int, default=64)
    parser.add_argument("--max-chars", type=positive_int, default=1000)
    parser.add_argument("--threads", type=positive_int, help="CPU threads for decoding")
    args = parser.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        fail(MTError("the server needs FastAPI and uvicorn: pip install 'mt[serve]'"))
    from mt.process import set_threads

    set_threads(args.threads)
    try:
        translator = Translator.load(args.run, args.checkpoint, args.device, args.engine)
    except (MTError, FileNotFoundError) as e:
        fail(e)
    limits = Limits(max_sentences=args.max_sentences, max_chars=args.max_chars)
    app = create_app(translator, limits, args.max_batch, args.max_wait_ms)
    # uvicorn names the address it listens on (with --port 0, the port the system chose)
    print(
        f"mt: serving {args.run} ({args.engine}); the page is at /, the API docs at /docs",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
