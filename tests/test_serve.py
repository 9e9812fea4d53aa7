"""`mt serve`: the HTTP API, dynamic batching, bad requests answered 4xx while serving goes on, and
the page at / checked in a real headless browser."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest

from mt.serve import Batcher
from mt.translator import Translation
from tests.conftest import start_mt, wait_until

PROBE = "The black cat ate the mouse."


class FakeTranslator:
    """Records the batches it is given; translates by upper-casing."""

    def __init__(self):
        self.batches: list[tuple[list[str], dict]] = []

    def translate(self, sentences, **options):
        self.batches.append((list(sentences), options))
        return [Translation(s, s.upper(), -1.0, ()) for s in sentences]


def test_requests_that_arrive_together_are_decoded_together():
    fake = FakeTranslator()

    async def clients():
        batcher = Batcher(fake, max_batch=64, max_wait_ms=1000)
        batcher.start()
        greedy = [batcher.submit([f"s{i}", f"t{i}"], beam=1) for i in range(6)]
        beam = [batcher.submit(["u"], beam=5)]
        results = await asyncio.gather(*greedy, *beam)
        await batcher.stop()
        return results

    results = asyncio.run(clients())
    assert [[t.text for t in r] for r in results] == [[f"S{i}", f"T{i}"] for i in range(6)] + [
        ["U"]
    ]
    # one batch per set of options, in arrival order
    assert fake.batches == [
        ([f"{c}{i}" for i in range(6) for c in "st"], {"beam": 1}),
        (["u"], {"beam": 5}),
    ]


def test_batches_stop_at_the_cap():
    fake = FakeTranslator()

    async def clients():
        batcher = Batcher(fake, max_batch=4, max_wait_ms=1000)
        batcher.start()
        results = await asyncio.gather(*[batcher.submit([str(i)], beam=1) for i in range(10)])
        await batcher.stop()
        return results

    assert [r[0].text for r in asyncio.run(clients())] == [str(i) for i in range(10)]
    assert [len(b[0]) for b in fake.batches] == [4, 4, 2]


@pytest.fixture(scope="module")
def server(toy_run):
    """`mt serve` of the toy run on a port the system chooses; its base URL."""
    proc = start_mt(
        "serve", "--run", str(toy_run), "--port", "0", "--threads", "1", stderr=subprocess.STDOUT
    )
    lines: list[str] = []  # read all along: an access log left in a full pipe would stop the server
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    wait_until(lambda: any("Uvicorn running on" in line for line in lines), proc, timeout=120)
    port = re.search(r"http://127\.0\.0\.1:(\d+)", "".join(lines)).group(1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    # uvicorn shuts down cleanly, then ends by the signal it was sent
    assert proc.wait(timeout=30) in (0, -15), "".join(lines)
    reader.join(timeout=10)
    assert "Application shutdown complete." in "".join(lines)


def call(url: str, body=None) -> tuple[int, dict]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_translate_with_alignment(server):
    status, health = call(f"{server}/health")
    assert status == 200 and health["status"] == "ok" and health["layers"] == 2
    assert health["align_method"] == "attention" and health["align_links"] == "argmax"
    status, out = call(
        f"{server}/translate", {"sentences": [PROBE, "A dog saw a cat."], "align": True}
    )
    assert status == 200
    first = out["translations"][0]
    assert first["text"] == "Le chat noir a mangé la souris."
    a = first["alignment"]
    assert a["source"] == PROBE.split() and a["target"] == first["text"].split()
    assert len(a["weights"]) == 7 and all(len(row) == 6 for row in a["weights"])
    assert [1, 2] in a["links"] and [2, 1] in a["links"]
    assert a["pharaoh"] == " ".join(f"{i}-{j}" for i, j in a["links"])
    status, out = call(
        f"{server}/translate", {"sentences": [PROBE], "align": True, "links": "mutual"}
    )
    mutual = out["translations"][0]["alignment"]
    assert status == 200 and mutual["weights"] == a["weights"]
    assert all(link in a["links"] for link in mutual["links"])
    status, out = call(f"{server}/translate", {"sentences": [PROBE], "beam": 4, "nbest": 3})
    nbest = out["translations"][0]["nbest"]
    assert status == 200 and len(nbest) == 3 and out["translations"][0]["alignment"] is None
    status, docs = 200, urllib.request.urlopen(f"{server}/openapi.json", timeout=30).read()
    assert b"/translate" in docs


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"sentences": []}, 422, "give at least one sentence"),
        ({"sentences": [PROBE, 7]}, 422, "valid string"),
        ({"sentences": ["a" * 1001]}, 413, "sentences[0]: 1001 characters; at most 1000"),
        ({"sentences": ["a"] * 65}, 413, "65 in one request; at most 64"),
        ({"sentences": [PROBE], "beam": 0}, 422, "beam: 0 is not in 1..16"),
        ({"sentences": [PROBE], "beam": 2, "nbest": 3}, 422, "nbest: 3 is not in 1..2"),
        ({"sentences": [PROBE], "layer": 9}, 422, "layer 9: the decoder has 2 layers"),
        (b"{not json", 422, "JSON decode error"),
        (
            {"sentences": [PROBE], "align": True, "method": "diagonal"},
            422,
            "one of attention, shift",
        ),
        (
            {"sentences": [PROBE], "align": True, "links": "best"},
            422,
            "one of argmax, mutual, grow-diag, grow-diag-final",
        ),
    ],
)
def test_bad_requests_get_4xx_and_serving_goes_on(server, body, status, message):
    got, out = call(f"{server}/translate", body)
    assert got == status and message in json.dumps(out["detail"])
    assert call(f"{server}/translate", {"sentences": [PROBE]})[1]["translations"][0]["text"]


def test_concurrent_clients_get_their_own_answers(server):
    sentences = [PROBE, "A dog saw a cat.", "The cat saw the black dog.", "A bird ate a mouse."]
    alone = [call(f"{server}/translate", {"sentences": [s], "beam": 1})[1] for s in sentences]
    with ThreadPoolExecutor(16) as pool:
        together = list(
            pool.map(
                lambda i: call(f"{server}/translate", {"sentences": [sentences[i % 4]], "beam": 1}),
                range(32),
            )
        )
    assert all(status == 200 for status, _ in together)
    texts = [out["translations"][0]["text"] for _, out in together]
    assert texts == [alone[i % 4]["translations"][0]["text"] for i in range(32)]
    # batched with others, a sentence's score moves only by float rounding
    scores = [out["translations"][0]["score"] for _, out in together]
    assert scores == pytest.approx([alone[i % 4]["translations"][0]["score"] for i in range(32)])


class Page(HTMLParser):
    """The parts of the rendered page a test checks."""

    def __init__(self):
        super().__init__()
        self.state, self.translation, self.rows, self.columns = None, "", [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.state = attrs.get("data-state")
        if attrs.get("id") == "translation":
            self._in = "translation"
        elif tag == "th" and "data-target" in attrs:
            self._in = "row"
        elif tag == "span" and self._in == "column":
            pass
        elif tag == "th" and "data-source" in attrs:
            self._in = "column"

    def handle_endtag(self, tag):
        if tag in ("p", "th"):
            self._in = None

    def handle_data(self, data):
        if self._in == "translation":
            self.translation += data
        elif self._in == "row":
            self.rows.append(data)
        elif self._in == "column":
            self.columns.append(data)


def test_the_page_shows_translation_and_heatmap_in_a_browser(server, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("MT_REQUIRE_BROWSER"):
            pytest.fail("MT_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=60000",
            "--dump-dom",
            f"{server}/?q=The%20black%20cat%20ate%20the%20mouse.",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    page = Page()
    page.feed(dom)
    assert page.state == "ready", dom[-2000:]
    assert page.translation == "Le chat noir a mangé la souris."
    assert page.rows == ["Le", "chat", "noir", "a", "mangé", "la", "souris."]
    assert page.columns == PROBE.split()
    assert dom.count('class="link"') == 7  # each target word's strongest link is outlined
