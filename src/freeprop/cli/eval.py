"""`freeprop eval`: the paper's metrics on EditVerseBench, UNICBench or pair data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from freeprop.cli.common import (
    add_device_options,
    device_and_dtype,
    format_size,
    output_folder,
    parse_size,
    positive_int,
    resolve_model,
)
from freeprop.defaults import BASELINES, BUNDLED_MODEL
from freeprop.errors import FreePropInputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score predictions on EditVerseBench / UNICBench / pair data with the paper's metrics",
        description="Paper §5.1 metrics (CLIP and DINO temporal consistency, Frame and Video text alignment, "
        "PickScore, VLM editing score) plus motion fidelity to the source and, on pair data, ground-truth "
        "metrics. Writes per_case.csv, summary.json, table.md (paper Table 1 layout) and report.html. "
        "Resumable: scored cases are kept in OUTPUT/cases/. Shard across GPUs with `accelerate launch -m "
        "freeprop.cli eval ...`. Learned metrics load their models from local folders or the Hugging Face "
        "cache; run `--metrics classic` without any weights. Steps before scoring: `eval select` writes the "
        "paper-style case subset, `eval first-frames` makes missing edited first frames with Qwen-Image-Edit.",
    )
    p.add_argument("--bench", help="editverse:PATH, unic:PATH or pairs:PATH[#SPLIT] (required)")
    p.add_argument(
        "--cases", help="file of case ids to keep, one per line (e.g. the paper's 125-case subset)"
    )
    p.add_argument(
        "--pred",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a method's outputs: DIR/<id>/generate.mp4 or DIR/<id>.mp4 (repeatable; none = run FreeProp)",
    )
    p.add_argument("--shipped", action="append", default=[], metavar="NAME",
                   help="score a method's video the benchmark ships in each case folder, by name: UNICBench's "
                   "VACE, anyv2v, ours (repeatable)")
    p.add_argument("--baseline", action="append", default=[], choices=BASELINES,
                   help="also run a weight-free baseline on every case, into OUTPUT/predictions/NAME (repeatable)")
    p.add_argument(
        "--metrics",
        default="all",
        help="all (default: every metric that can run), paper, classic, or a list of "
        "clip,dino,frame,video,pick,vlm,motion,warp,gt",
    )
    p.add_argument("-o", "--output", help="report folder (required)")
    p.add_argument("--clip", help="CLIP ViT-L/14 folder or id (default openai/clip-vit-large-patch14)")
    p.add_argument("--dino", help="DINOv2 folder or id (default facebook/dinov2-base)")
    p.add_argument("--pickscore", help="PickScore folder or id (default yuvalkirstain/PickScore_v1)")
    p.add_argument(
        "--pickscore-processor",
        help="processor for PickScore (default laion/CLIP-ViT-H-14-laion2B-s32B-b79K)",
    )
    p.add_argument("--viclip", help="ViClip-InternVid-10M-FLT.pth (needed for the video metric)")
    p.add_argument("--viclip-tokenizer", help="CLIP tokenizer folder for ViCLIP (default: --clip)")
    p.add_argument("--judge", help="VLM judge: qwen:PATH or openai:BASE_URL#MODEL (key in $OPENAI_API_KEY)")
    p.add_argument(
        "--vlm-frames",
        choices=("ffp10", "editverse"),
        default="ffp10",
        help="10 uniform frames (paper) or range(0,T,T//3)",
    )
    p.add_argument(
        "--swap-red-blue", action="store_true", help="reproduce EditVerse's BGR quirk for the judge"
    )
    p.add_argument("--protocol", choices=("freeprop", "editverse", "ffp"), default="freeprop",
                   help="how the VLM judge is asked: freeprop (our prompts, lenient parsing), editverse (EditVerse's "
                   "script: its prompts, text first, tags kept, range(0,T,T//3), BGR quirk, strict digit), ffp "
                   "(the paper: EditVerse's prompts and parsing on 10 uniform frames); see docs/evaluation.md")
    p.add_argument("--judge-prompts", help="JSON {judge, extract} with EditVerse's prompt texts (--protocol editverse/ffp)")
    p.add_argument(
        "--unic-instruction",
        default="Edit the video so that it shows: {caption}",
        help="VLM instruction for UNICBench",
    )
    p.add_argument("--cache-dir", help="embedding cache (default OUTPUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="do not cache embeddings")
    p.add_argument("--model", help="run this FreeProp model on every case beside the methods given (without --pred/--baseline/--shipped "
                   f"FreeProp runs anyway, default {BUNDLED_MODEL})")
    p.add_argument("--random-weights", action="store_true", help="allow a preset with random weights")
    p.add_argument("--steps", type=positive_int, help="denoising steps for FreeProp (default: the model's own)")
    p.add_argument("--size", type=parse_size,
                   help="HEIGHTxWIDTH of FreeProp's own outputs (default: each source's); scored with --resample")
    p.add_argument("--frames", type=positive_int, help="only the first N frames of each source (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample", action="store_true",
                   help="score predictions of another length or size after resampling them (reported per case); "
                   "default: such a prediction is an error for its case")
    _add_unic_tasks(p, "Propagation")
    add_device_options(p)
    p.set_defaults(func=cmd_eval, eval_parser=p)
    steps = p.add_subparsers(dest="eval_command", metavar="[STEP]",
                             title="steps before scoring (freeprop eval STEP --help)")
    _add_select(steps)
    _add_first_frames(steps)


def _add_unic_tasks(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--unic-tasks", default=default,
                   help=f"UNICBench task folders to read, comma-separated, or all (default {default}; "
                   "a --cases list names its own tasks: Propagation ids are plain, others <Task>-<id>)")


def _unic_tasks(text: str) -> tuple[str, ...] | None:
    return None if text == "all" else tuple(t.strip() for t in text.split(",") if t.strip())


def _add_select(sub) -> None:
    p = sub.add_parser(
        "select",
        help="choose the first-frame propagation subset (the paper's 125 EditVerseBench / 128 UNICBench cases)",
        description="Writes a case list for `freeprop eval --cases`, chosen by a written rule (the paper's lists "
        "are not published): drop the task types a first-frame edit cannot express, measure each source "
        "video's stability (hard cuts; the share of frame-0 points still tracked at the end), keep the most "
        "stable. The rule goes in the list's header and every case's measures in a CSV beside it. "
        "See docs/evaluation.md.",
    )
    p.add_argument("--bench", required=True, help="editverse:PATH or unic:PATH")
    p.add_argument("-o", "--output", required=True, help="case list to write, e.g. ffp125.txt (+ ffp125.csv)")
    p.add_argument("--count", type=positive_int, help="cases to keep (default 125 on EditVerseBench, 128 on UNICBench)")
    p.add_argument("--exclude-types", help="comma-separated types / task folders to drop (default: camera "
                   "changes, pose/depth/sketch-to-video, detection, inpainting, edit with mask, Re-Camera)")
    p.add_argument("--max-cut", type=float, default=0.5,
                   help="histogram jump between consecutive frames that counts as a hard cut (default 0.5)")
    _add_unic_tasks(p, "all")
    p.set_defaults(func=cmd_eval_select)


def _add_first_frames(sub) -> None:
    p = sub.add_parser(
        "first-frames",
        help="edit the first frame of every case that ships none, with Qwen-Image-Edit (paper §5.1)",
        description="For each case without an edited first frame, edits frame 0 of its source with diffusers' "
        "QwenImageEditPipeline and the case's instruction, and writes ROOT/first_frames/<id>.png at the "
        "source's size (with <id>.json: model, prompt, settings). Existing files are kept, so a rerun "
        "finishes the rest. Shard across GPUs with `accelerate launch -m freeprop.cli eval first-frames ...`.",
    )
    p.add_argument("--bench", required=True, help="editverse:PATH or unic:PATH")
    p.add_argument("--model", required=True, help="local Qwen-Image-Edit folder (huggingface-cli download Qwen/Qwen-Image-Edit)")
    p.add_argument("--cases", help="file of case ids (e.g. from `freeprop eval select`)")
    p.add_argument("--steps", type=positive_int, default=50, help="denoising steps (default 50)")
    p.add_argument("--cfg", type=float, default=4.0, help="true CFG scale (default 4.0)")
    p.add_argument("--negative-prompt", default=" ", help='default " " (the model card\'s)')
    p.add_argument("--prompt", default="{instruction}",
                   help="prompt template; fields {instruction}, {target_prompt} (default {instruction})")
    p.add_argument("--seed", type=int, default=0)
    _add_unic_tasks(p, "all")
    add_device_options(p)
    p.set_defaults(func=cmd_eval_first_frames)



def cmd_eval(args: argparse.Namespace) -> int:
    from freeprop.eval.benchmarks import load_bench, read_case_list
    from freeprop.eval.runner import (
        EmbeddingCache,
        MetricModels,
        Scorer,
        ShippedPredictions,
        available_metrics,
        baseline_edit,
        parse_metrics,
        predict_with_freeprop,
        run,
        write_predictions,
    )

    # 1. Everything the user named, checked before any model loads.
    if not args.bench or not args.output:
        args.eval_parser.error("the following arguments are required: --bench, -o/--output")
    out_dir = output_folder(args.output)
    cases = read_case_list(args.cases) if args.cases else None
    bench = load_bench(args.bench, cases, args.unic_instruction, _unic_tasks(args.unic_tasks))
    if args.shipped and bench.kind != "unic":
        raise FreePropInputError("--shipped scores the videos UNICBench ships in its case folders; use --bench unic:PATH")
    predictions = {}
    for spec in args.pred:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise FreePropInputError(
                f"--pred {spec!r}: use NAME=FOLDER with an existing folder of predictions"
            )
        predictions[name] = Path(folder)
    for name in args.shipped:
        predictions[name] = ShippedPredictions(name)
    has_targets = any(c.target is not None for c in bench.cases)
    metrics = parse_metrics(args.metrics, has_targets, args.judge is not None)
    paths = {
        k: getattr(args, k)
        for k in ("clip", "dino", "pickscore", "pickscore_processor", "viclip", "viclip_tokenizer")
    }
    metrics, left_out = available_metrics(metrics, paths, explicit=args.metrics not in ("all", "paper"))
    for line in left_out:
        print(f"note: {line}", file=sys.stderr)
    if not metrics:
        raise FreePropInputError("no metric can run: give the models' folders (see the notes above) or --metrics classic")
    for line in bench.missing[:10]:
        print(f"missing: {line}", file=sys.stderr)
    if len(bench.missing) > 10:
        print(f"missing: … {len(bench.missing)} in all", file=sys.stderr)
    device, dtype = device_and_dtype(args.device, args.dtype)

    # 2. Weight-free baselines asked for, and FreeProp itself when no predictions are given.
    notes = list(left_out)
    for name in args.baseline:
        folder = out_dir / "predictions" / name
        write_predictions(bench, folder, baseline_edit(name), args.frames, desc=name)
        predictions[name] = folder
    if not predictions or args.model:  # FreeProp runs unless only other methods' outputs are given
        folder = out_dir / "predictions" / "freeprop"
        model = resolve_model(args.model, random_weights=args.random_weights)
        skipped = predict_with_freeprop(
            bench, folder, model, args.steps, args.seed, device, dtype, args.frames, size=args.size
        )
        if args.size and not args.resample:
            args.resample = True
            notes.append(f"FreeProp ran at {format_size(*args.size)}: its outputs are scored resampled to each case")
        if skipped:
            notes.append(
                f"FreeProp not run on {len(skipped)} case(s) without a source video or edited first frame"
            )
            print(f"note: {notes[-1]}", file=sys.stderr)
        predictions["freeprop"] = folder

    # 3. Metrics and report.
    metric_dtype = device_and_dtype(args.device, args.dtype or "fp32")[1]  # EditVerse scores in fp32
    models = MetricModels.load(metrics, paths, device, metric_dtype, args.judge, args.vlm_frames, args.swap_red_blue,
                               args.protocol, args.judge_prompts)
    cache = EmbeddingCache(None if args.no_cache else Path(args.cache_dir or out_dir / "cache"))
    summary = run(bench, predictions, Scorer(models, metrics, cache), out_dir, notes=notes, resample=args.resample)
    if summary:
        from freeprop.eval.report import markdown_table

        print(markdown_table(summary, bench.kind), end="")
        print(f"wrote {out_dir}/report.html, table.md, summary.json, per_case.csv")
    # as a batch edit does: the report is written for the rest, and exit status 1 says some cases failed
    failed = {name: s["errors"] for name, s in summary.items() if s["errors"]}
    if failed:
        counts = ", ".join(f"{name} {n}" for name, n in failed.items())
        print(f"freeprop eval: cases that could not be scored ({counts}); their errors are in per_case.csv",
              file=sys.stderr)
        return 1
    return 0




def _bench_for_step(args: argparse.Namespace):
    from freeprop.eval.benchmarks import load_bench, read_case_list

    if not args.bench.startswith(("editverse:", "unic:")):
        raise FreePropInputError(f"--bench {args.bench!r}: this step is for editverse:PATH or unic:PATH")
    cases = read_case_list(args.cases) if getattr(args, "cases", None) else None
    return load_bench(args.bench, cases, unic_tasks=_unic_tasks(args.unic_tasks))


def cmd_eval_select(args: argparse.Namespace) -> None:
    from freeprop.eval.selection import COUNTS, EXCLUDED_TYPES, SelectionRule, select_cases, write_selection

    bench = _bench_for_step(args)
    output = Path(args.output)
    if not output.parent.is_dir():
        raise FreePropInputError(f"{output.parent}: folder not found")
    excluded = tuple(t.strip().lower() for t in args.exclude_types.split(",")) if args.exclude_types else EXCLUDED_TYPES
    rule = SelectionRule(count=args.count or COUNTS[bench.kind], exclude_types=excluded, max_cut=args.max_cut)
    rows = select_cases(bench, rule)
    command = f"freeprop eval select --bench {args.bench} --count {rule.count} --max-cut {rule.max_cut:g}"
    command += f" --exclude-types '{args.exclude_types}'" if args.exclude_types else ""
    command += f" --unic-tasks {args.unic_tasks}" if bench.kind == "unic" else ""
    write_selection(rows, bench, rule, output, command)
    decisions = [r["decision"] for r in rows]
    print(f"wrote {output}: {decisions.count('selected')} of {len(rows)} cases ({decisions.count('excluded type')} "
          f"excluded by type, {decisions.count('ranked out')} ranked out, {decisions.count('no source')} without a "
          f"source video); measures in {output.with_suffix('.csv')}")
    if decisions.count("selected") < rule.count:
        print(f"note: fewer than {rule.count} cases could be kept", file=sys.stderr)


def cmd_eval_first_frames(args: argparse.Namespace) -> None:
    from freeprop.eval.first_frames import FirstFrameSettings, edit_first_frames, load_qwen_image_edit

    bench = _bench_for_step(args)
    settings = FirstFrameSettings(steps=args.steps, true_cfg_scale=args.cfg, negative_prompt=args.negative_prompt,
                                  seed=args.seed, prompt=args.prompt)
    device, dtype = device_and_dtype(args.device, args.dtype)
    pipe = load_qwen_image_edit(args.model, device, dtype)
    written, no_source = edit_first_frames(bench, pipe, settings, model=str(args.model))
    for case_id in no_source[:10]:
        print(f"missing: {case_id}: source video (no first frame made)", file=sys.stderr)
    print(f"wrote {len(written)} first frame(s) to {bench.root / 'first_frames'}")
