"""The removal curation loop (paper §3.3): human review → fine-tune VACE on accepted removals → regenerate.

1. `write_review(dataset, folder)` — an HTML page of candidate pairs (source | edit, animated) with
   accept / reject buttons. Decisions are saved to `decisions.json`: by the page's "Save" button
   (a download), or straight into the folder when the page is served by `serve_review` (bound to
   127.0.0.1). `read_decisions` reads them back.
2. `finetune_vace(dataset, decisions, ...)` — LoRA (peft, through diffusers' adapter API) on the
   `WanVACETransformer3DModel`, trained with the Wan flow-matching loss of `training/losses.py` on the
   accepted removals: the target video's latents are denoised under VACE's own conditioning of the
   source video and the removal mask (the pipeline's `preprocess_conditions` / `prepare_video_latents`
   / `prepare_masks`) and the removal caption. Saves a diffusers LoRA folder.
3. Regenerate the removal subset with it: `freeprop data build CONFIG models.vace_lora=FOLDER
   local.tasks=[removal] output=NEW` (VACE loads it with `load_lora_weights`).
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from freeprop.errors import FreePropInputError
from freeprop.models.loading import read_safetensors, write_safetensors
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


# --- 2. fine-tune VACE on accepted removals ------------------------------------------------------------


def finetune_vace(
    pipe,
    dataset: str | Path,
    decisions: dict[str, bool],
    output: str | Path,
    steps: int = 1000,
    lr: float = 1e-4,
    rank: int = 64,
    shift: float = 5.0,
    seed: int = 0,
    progress: bool = True,
    save_every: int = 100,
    resume: bool = False,
    gradient_checkpointing: bool = True,
    on_step=None,
) -> dict:
    """LoRA-fine-tune `pipe.transformer` (a `WanVACEPipeline`) on accepted removals; save it to `output`.

    At paper scale (14,389 accepted pairs of 81 frames at 720p) the examples cannot be held in memory:
    each step reads its pair from the shards and makes VACE's conditions and target latents on the
    spot, under `no_grad`; the transformer checkpoints its activations (`gradient_checkpointing`).
    Every `save_every` steps the LoRA, the optimizer, the step and the random state go to
    `output/checkpoints/` (the folders `freeprop train` uses, `training/checkpoints.py`), so
    `resume=True` continues a killed run exactly where its last checkpoint was.
    """
    import torch
    from diffusers import WanVACEPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from tqdm.auto import tqdm

    from freeprop.data.pairs import PairDataset
    from freeprop.training import checkpoints
    from freeprop.training.losses import training_sigmas

    pairs = PairDataset(dataset, tasks=("removal",))
    accepted = [i for i, row in enumerate(pairs.rows) if decisions.get(row["sample_id"])]
    if not accepted:
        raise FreePropInputError("no accepted removal pairs in the decisions; accept some on the review page")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    root = output / "checkpoints"
    if checkpoints.newest_first(root) and not resume:
        raise FreePropInputError(f"{output} holds checkpoints of an earlier fine-tune; pass --resume to continue it")
    generator = torch.Generator().manual_seed(seed)

    # 1. LoRA on the attention projections (peft through diffusers), AdamW.
    transformer = pipe.transformer
    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    start, losses = 0, []
    if resume and checkpoints.newest_first(root):
        start, losses = _load_vace_checkpoint(checkpoints.newest_first(root)[0], transformer, optimizer, generator)

    # 2. The loop: one pair per step, streamed from the shards.
    sigmas, transformer = training_sigmas(shift), transformer.train()
    for step in tqdm(range(start, steps), initial=start, total=steps, desc="finetune VACE", disable=not progress):
        example = _vace_example(pipe, pairs[accepted[step % len(accepted)]], generator)
        loss = _vace_step(transformer, optimizer, params, example, sigmas, generator)
        losses.append(loss)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            tmp, final = checkpoints.partial_folder(root, step + 1)
            write_safetensors({k: v.contiguous() for k, v in get_peft_model_state_dict(transformer).items()},
                              tmp / "lora.safetensors")  # fmt: skip
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save({"generator": generator.get_state(), "torch": torch.get_rng_state()}, tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step + 1, "losses": losses}))
            checkpoints.commit(root, tmp, final)
        if on_step is not None:
            on_step(step + 1)
    transformer.eval()

    # 3. A diffusers LoRA folder (`load_lora_weights` reads it back), its file renamed into place whole.
    tmp = Path(tempfile.mkdtemp(prefix=".lora.", dir=output))
    WanVACEPipeline.save_lora_weights(tmp, transformer_lora_layers=get_peft_model_state_dict(transformer))
    for file in tmp.iterdir():
        os.replace(file, output / file.name)
    tmp.rmdir()
    summary = {"accepted": len(accepted), "steps": steps, "first_loss": losses[0], "last_loss": losses[-1]}
    with atomic_path(output / "finetune_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def _vace_example(pipe, pair, generator):
    """VACE's own preprocessing of one pair: (conditions, text embedding, target latents), no gradients."""
    import torch
    from PIL import Image

    from freeprop.codecs import WanVAECodec
    from freeprop.video import to_tensor

    device = pipe.transformer.device
    f, h, w = pair.source.shape[:3]
    mask = pair.mask if pair.mask is not None else np.zeros((f, h, w), np.uint8)
    with torch.no_grad():
        video, vmask, refs = pipe.preprocess_conditions(
            [Image.fromarray(x) for x in pair.source], [Image.fromarray(m) for m in mask], None, 1, h, w, f,
            torch.float32, device,
        )  # fmt: skip
        cond = torch.cat([pipe.prepare_video_latents(video, vmask, refs, generator, device),
                          pipe.prepare_masks(vmask, refs, generator)], dim=1)  # fmt: skip
        text, _ = pipe.encode_prompt(pair.target_caption or pair.instruction, do_classifier_free_guidance=False,
                                     device=device)  # fmt: skip
        target = WanVAECodec(pipe.vae).encode(to_tensor(pair.target)[None])
    return cond, text, target


def _vace_step(transformer, optimizer, params, example, sigmas, generator) -> float:
    """One flow-matching step (v = noise − x0, the loss `freeprop train` uses)."""
    import torch
    import torch.nn.functional as F

    from freeprop.training.losses import add_noise, sample_sigmas

    cond, text, x0 = example
    sigma = sample_sigmas(1, sigmas, "uniform", generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    x_t, v = add_noise(x0, noise, sigma.to(x0))
    dtype, device = transformer.dtype, transformer.device
    scale = torch.ones(len(transformer.config.vace_layers), device=device)
    pred = transformer(
        hidden_states=x_t.to(dtype), timestep=(sigma * 1000).to(device), encoder_hidden_states=text.to(dtype),
        control_hidden_states=cond.to(dtype), control_hidden_states_scale=scale.to(dtype), return_dict=False,
    )[0]  # fmt: skip
    loss = F.mse_loss(pred.float(), v.float())
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return loss.item()


def _load_vace_checkpoint(path: Path, transformer, optimizer, generator) -> tuple[int, list[float]]:
    import torch
    from peft.utils import set_peft_model_state_dict

    set_peft_model_state_dict(transformer, read_safetensors(path / "lora.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    state = json.loads((path / "state.json").read_text())
    return state["step"], state["losses"]
