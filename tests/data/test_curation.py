import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from freeprop.data.curation import make_review_server, read_decisions, write_review
from freeprop.data.pairs import PairWriter
from freeprop.data.synthetic import make_pair
from freeprop.data.vace_finetune import finetune_vace
from freeprop.errors import FreePropInputError
from tests.data.conftest import build_tiny_vace


@pytest.fixture(scope="module")
def removals(tmp_path_factory):
    root = tmp_path_factory.mktemp("removals")
    with PairWriter(root) as writer:
        for seed in range(2):
            writer.add(make_pair(seed, "train", "removal", frames=9, height=32, width=32))
        writer.add(make_pair(5, "train", "swap", frames=9, height=32, width=32))
    return root


def test_review_page_and_decisions_round_trip(removals, tmp_path):
    page = write_review(removals, tmp_path / "review")
    text = page.read_text()
    assert text.count("class=card") == 2 and "swap" not in text.split("<div class=card")[1]
    assert len(list((tmp_path / "review" / "clips").glob("*.gif"))) == 2
    ids = [line.split('data-id="')[1].split('"')[0] for line in text.split("<div class=card")[1:]]

    server = make_review_server(tmp_path / "review", port=0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        body = json.dumps({ids[0]: "accept", ids[1]: "reject"}).encode()
        with urllib.request.urlopen(
            urllib.request.Request(f"{url}/decisions", data=body, method="POST")
        ) as r:
            assert r.status == 204
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/decisions", data=b'{"x": "maybe"}', method="POST")
            )
        with urllib.request.urlopen(f"{url}/index.html") as r:
            assert b"Save decisions" in r.read()
    finally:
        server.shutdown()
    assert read_decisions(tmp_path / "review" / "decisions.json") == {ids[0]: True, ids[1]: False}
    (tmp_path / "bad.json").write_text('{"a": "yes"}')
    with pytest.raises(FreePropInputError, match="'accept' or 'reject'"):
        read_decisions(tmp_path / "bad.json")


def test_finetune_vace_on_accepted_removals_and_load_the_lora(removals, tmp_path):
    from freeprop.data.pairs import PairDataset

    ids = [r["sample_id"] for r in PairDataset(removals, tasks=("removal",)).rows]
    pipe = build_tiny_vace()
    summary = finetune_vace(pipe, removals, {ids[0]: True, ids[1]: False}, tmp_path / "lora", steps=4, lr=1e-2,
                            rank=4, progress=False)  # fmt: skip
    assert summary["accepted"] == 1 and summary["steps"] == 4 and np.isfinite(summary["recent_mean"]["loss"])
    assert (tmp_path / "lora" / "adapter" / "pytorch_lora_weights.safetensors").is_file()

    def run(p):
        video = [np.full((32, 32, 3), 128, np.uint8)] * 9
        from PIL import Image

        return p(video=[Image.fromarray(v) for v in video], prompt="grass", height=32, width=32, num_frames=9,
                 num_inference_steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(0)).frames[0]  # fmt: skip

    fresh = build_tiny_vace()
    before = run(fresh)
    fresh.load_lora_weights(str(tmp_path / "lora" / "adapter"))
    assert np.abs(run(fresh) - before).max() > 1e-4  # the fine-tune changes VACE's output
    with pytest.raises(FreePropInputError, match="no accepted removal pairs"):
        finetune_vace(build_tiny_vace(), removals, {}, tmp_path / "none", steps=1, progress=False)


def test_review_server_saves_only_from_its_own_page(removals, tmp_path):
    """Cross-origin and DNS-rebound POSTs are refused (403), oversized or malformed lengths too, and
    decisions.json is untouched by all of them."""
    import http.client

    write_review(removals, tmp_path / "review")
    server = make_review_server(tmp_path / "review", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    decisions = tmp_path / "review" / "decisions.json"

    def post(body: bytes, headers: dict) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("POST", "/decisions", skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body)
        status = conn.getresponse().status
        conn.close()
        return status

    good = json.dumps({"a": "accept"}).encode()
    own = {"Host": f"127.0.0.1:{port}", "Content-Length": str(len(good))}
    try:
        assert post(good, own | {"Origin": "http://evil.example"}) == 403
        assert post(good, own | {"Host": f"rebound.example:{port}"}) == 403
        assert post(good, own | {"Content-Length": "-5"}) == 411
        assert post(b"", own | {"Content-Length": str(10**9)}) == 413
        assert not decisions.exists()
        assert post(good, own | {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"}) == 204
        assert read_decisions(decisions) == {"a": True}
        later = json.dumps({"b": "reject"}).encode()  # a second session's save keeps the first's decisions
        assert post(later, own | {"Content-Length": str(len(later))}) == 204
        assert read_decisions(decisions) == {"a": True, "b": False}
    finally:
        server.shutdown()


def test_the_review_page_shows_decisions_saved_earlier(removals, tmp_path):
    """Reopened, the page checks the radio buttons of decisions.json (in headless Chromium)."""
    import shutil

    chromium = shutil.which("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    page_path = write_review(removals, tmp_path / "review")
    first_id = page_path.read_text().split('data-id="')[1].split('"')[0]
    (tmp_path / "review" / "decisions.json").write_text(json.dumps({first_id: "reject"}))
    server = make_review_server(tmp_path / "review", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            radio = page.locator(f'input[name="{first_id}"][value="reject"]')
            radio.wait_for()
            page.wait_for_function(f'document.querySelector(\'input[name="{first_id}"][value="reject"]\').checked')
            assert radio.is_checked()
            browser.close()
        paged = write_review(removals, tmp_path / "paged", per_page=1)  # two removals: two pages
        server2 = make_review_server(tmp_path / "paged", port=0)
        threading.Thread(target=server2.serve_forever, daemon=True).start()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server2.server_address[1]}/index.html")
            assert page.locator(".card:visible").count() == 1 and page.inner_text("#page") == "page 1 of 2"
            first = page.locator(".card:visible").get_attribute("data-id")
            page.click("#next")
            assert page.inner_text("#page") == "page 2 of 2" and page.locator(".card:visible").count() == 1
            assert page.locator(".card:visible").get_attribute("data-id") != first
            browser.close()
        server2.shutdown()
        assert paged.read_text().count("loading=lazy") == 2
    finally:
        server.shutdown()


def test_the_vace_fine_tune_resumes_after_a_kill_exactly(removals, tmp_path):
    """Killed after step 3 of 6 (checkpoints every 2 steps), `resume=True` continues from step 2 and
    ends with the LoRA of an uninterrupted run; a fresh run into a folder with checkpoints is refused."""
    from safetensors.torch import load_file

    from freeprop.data.pairs import PairDataset

    ids = [r["sample_id"] for r in PairDataset(removals, tasks=("removal",)).rows]
    decisions = {sid: True for sid in ids}
    options = dict(steps=6, lr=1e-2, rank=4, progress=False, save_every=2)
    finetune_vace(build_tiny_vace(), removals, decisions, tmp_path / "straight", **options)

    def kill_after_3(trainer):
        if trainer.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune_vace(build_tiny_vace(), removals, decisions, tmp_path / "killed", on_step=kill_after_3, **options)
    assert (tmp_path / "killed" / "checkpoints" / "latest").read_text() == "step-0000002"
    with pytest.raises(FreePropInputError, match="--resume"):
        finetune_vace(build_tiny_vace(), removals, decisions, tmp_path / "killed", **options)
    summary = finetune_vace(build_tiny_vace(), removals, decisions, tmp_path / "killed", resume=True, **options)
    straight = load_file(str(tmp_path / "straight" / "adapter" / "pytorch_lora_weights.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "adapter" / "pytorch_lora_weights.safetensors"))
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert summary["steps"] == 6 and summary["status"] == "finished"
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # `freeprop train`'s log: the steps after the checkpoint logged once
