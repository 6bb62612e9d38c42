"""The removal curation loop (paper §3.3): human review → fine-tune VACE on accepted removals → regenerate.

1. `write_review(dataset, folder)` — an HTML page of candidate pairs (source | edit, animated) with
   accept / reject buttons. Decisions are saved to `decisions.json`: by the page's "Save" button
   (a download), or straight into the folder when the page is served by `serve_review` (bound to
   127.0.0.1). `read_decisions` reads them back.
2. `data/vace_finetune.py` — LoRA-fine-tune VACE on the accepted removals (`freeprop data
   finetune-vace`), on `freeprop train`'s loop; it saves a diffusers LoRA folder.
3. Regenerate the removal subset with it: `freeprop data build CONFIG models.vace_lora=FOLDER
   local.tasks=[removal] output=NEW` (VACE loads it with `load_lora_weights`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from freeprop.errors import FreePropInputError
from freeprop.video import atomic_path, write_video

# --- 1. review ---------------------------------------------------------------------------------------


def write_review(
    dataset: str | Path, folder: str | Path, task: str = "removal", limit: int | None = None, per_page: int = 48
) -> Path:
    """Side-by-side GIFs and `index.html` for the `task` pairs of a pair dataset; returns the page.
    The page shows `per_page` pairs at a time (the paper curates 14,389 removals: one page of them
    all would load every GIF at once); decisions on every page are kept and saved together."""
    import cv2

    from freeprop.data.pairs import PairDataset

    folder = Path(folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    pairs = PairDataset(dataset, tasks=(task,))
    cards = []
    for index in range(len(pairs) if limit is None else min(limit, len(pairs))):
        pair = pairs[index]
        h, w = pair.source.shape[1:3]
        scale = min(1.0, 160 / h)
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        both = np.stack(
            [
                np.concatenate([cv2.resize(s, size), cv2.resize(t, size)], 1)
                for s, t in zip(pair.source, pair.target)
            ]
        )
        write_video(folder / "clips" / f"{pair.sample_id}.gif", both, pair.fps)
        sid = html.escape(pair.sample_id)
        cards.append(
            f'<div class=card data-id="{sid}"><img loading=lazy src="clips/{sid}.gif"><p>{html.escape(pair.instruction)}</p>'
            f'<label><input type=radio name="{sid}" value=accept> accept</label> '
            f'<label><input type=radio name="{sid}" value=reject> reject</label></div>'
        )
    page = f"""<!doctype html><meta charset="utf-8"><title>FreeProp review — {html.escape(task)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .card{{display:inline-block;margin:8px;vertical-align:top;width:340px}}
img{{max-width:330px}} #bar{{position:sticky;top:0;background:#fff;padding:6px}}</style>
<div id=bar><b>{len(cards)} {html.escape(task)} candidates</b> — left: source, right: edit.
<button onclick="save()">Save decisions</button> <span id=msg></span>
<button id=prev onclick="show(page - 1)">&larr; previous</button> <span id=page></span>
<button id=next onclick="show(page + 1)">next &rarr;</button></div>
{"".join(cards)}
<script>
const PER_PAGE = {int(per_page)}, cards = [...document.querySelectorAll('.card')];
const pages = Math.max(1, Math.ceil(cards.length / PER_PAGE));
let page = 0;
function show(p) {{  // hidden cards' lazy GIFs are not fetched
  page = Math.max(0, Math.min(p, pages - 1));
  cards.forEach((c, i) => c.style.display = Math.floor(i / PER_PAGE) === page ? 'inline-block' : 'none');
  document.getElementById('page').textContent = `page ${{page + 1}} of ${{pages}}`;
}}
show(0);
function decisions() {{
  const out = {{}};
  document.querySelectorAll('.card').forEach(c => {{
    const v = c.querySelector('input:checked'); if (v) out[c.dataset.id] = v.value; }});
  return out;
}}
fetch('decisions.json').then(r => r.ok ? r.json() : {{}}).then(saved => {{  // earlier decisions, shown
  for (const [id, v] of Object.entries(saved)) {{
    const input = document.querySelector(`input[name="${{CSS.escape(id)}}"][value="${{v}}"]`);
    if (input) input.checked = true; }} }}).catch(() => {{}});
function save() {{
  const body = JSON.stringify(decisions(), null, 1);
  fetch('decisions', {{method: 'POST', body}}).then(r => {{
    if (!r.ok) throw 0; document.getElementById('msg').textContent = 'saved to decisions.json'; }})
  .catch(() => {{  // a static page: download the file instead
    const a = document.createElement('a'); a.href = URL.createObjectURL(new Blob([body]));
    a.download = 'decisions.json'; a.click(); document.getElementById('msg').textContent = 'downloaded decisions.json'; }});
}}
</script>"""
    with atomic_path(folder / "index.html") as tmp:
        tmp.write_text(page)
    return folder / "index.html"


MAX_DECISIONS_BYTES = 4 * 2**20  # a decision per sample is ~30 bytes: room for 100k samples


def make_review_server(folder: str | Path, port: int = 8765, host: str = "127.0.0.1"):
    """An HTTP server over the review folder that saves POSTed decisions to `decisions.json` (atomically).

    Only the page it serves may save: a POST must come with a Host naming this server and (when the
    browser sends one) the same Origin, so neither another site nor a DNS-rebound name can overwrite
    the decisions; the body is bounded and its length must be a plain non-negative number."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = Path(folder)
    server: ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        def _allowed_hosts(self) -> set[str]:
            bound, port_ = server.server_address[:2]
            names = {bound, "localhost", "127.0.0.1", "[::1]"} if bound in ("127.0.0.1", "localhost") else {bound}
            return {f"{name}:{port_}" for name in names}

        def do_POST(self):  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") != "/decisions":
                self.send_error(404)
                return
            hosts, origin = self._allowed_hosts(), self.headers.get("Origin")
            if self.headers.get("Host") not in hosts or (origin is not None and origin.removeprefix("http://") not in hosts):
                self.send_error(403, "decisions are saved only from the review page itself")
                return
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_DECISIONS_BYTES:
                self.send_error(413 if length.isdigit() else 411, f"body must be 0..{MAX_DECISIONS_BYTES} bytes")
                return
            try:
                data = json.loads(self.rfile.read(int(length)))
                _check_decisions(data, "request")
            except (ValueError, FreePropInputError) as err:
                self.send_error(400, str(err))
                return
            saved = folder / "decisions.json"  # merged: a save never erases decisions this page did not show
            merged = (read_raw_decisions(saved) if saved.is_file() else {}) | data
            with atomic_path(saved) as tmp:
                tmp.write_text(json.dumps(merged, indent=1))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    try:
        server = ThreadingHTTPServer((host, port), partial(Handler, directory=str(folder)))  # the handler reads it
        return server
    except OSError as err:  # the port is taken, or not ours to bind
        raise FreePropInputError(f"cannot serve on {host}:{port} ({err.strerror}); choose another --serve PORT") from None


def _check_decisions(data, where: str) -> None:
    if not isinstance(data, dict) or any(v not in ("accept", "reject") for v in data.values()):
        raise FreePropInputError(f"{where}: decisions must map sample ids to 'accept' or 'reject'")


def read_raw_decisions(path: Path) -> dict[str, str]:
    """`{sample_id: "accept" | "reject"}` as saved, checked."""
    if not path.is_file():
        raise FreePropInputError(f"{path}: no decisions file; save one from the review page first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FreePropInputError(f"{path}: not valid JSON ({err.msg})") from None
    _check_decisions(data, str(path))
    return data


def read_decisions(path: str | Path) -> dict[str, bool]:
    """`{sample_id: True (accept) / False (reject)}` from a decisions file."""
    return {k: v == "accept" for k, v in read_raw_decisions(Path(path)).items()}
