"""`freeprop eval` end to end on pair data with tiny random CLIP / DINOv2 models (real classes)."""

import csv
import json
import shutil

import numpy as np
import pytest

from freeprop.cli import main
from freeprop.eval.benchmarks import load_bench
from freeprop.eval.metrics.embedding import load_clip_embedder, load_clip_scorer, temporal_consistency
from freeprop.eval.runner import EmbeddingCache, MetricModels, Scorer, parse_metrics, run, summarize
from freeprop.video import read_video, write_video


@pytest.fixture(scope="module")
def bench_and_preds(tmp_path_factory):
    from freeprop.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("bench")
    write_synthetic(root / "pairs", {"test": 2}, frames=5, height=32, width=32, progress=False)
    bench = load_bench(f"pairs:{root / 'pairs'}")
    for method in ("copy", "truth"):
        (root / method).mkdir()
    for case in bench.cases:
        write_video(root / "copy" / f"{case.case_id}.mp4", case.source)  # <id>.mp4 layout
        (root / "truth" / case.case_id).mkdir()
        write_video(root / "truth" / case.case_id / "generate.mp4", case.target)  # EditVerse layout
    return root, bench


def test_cli_writes_the_report_and_numbers_match_direct_computation(
    bench_and_preds, tiny_clip_folder, tiny_dino_folder, tmp_path, capsys
):
    root, bench = bench_and_preds
    out = tmp_path / "report"
    args = ["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"copy={root / 'copy'}", "--pred", f"truth={root / 'truth'}",
            "--metrics", "clip,dino,frame,pick,motion,warp,gt", "--clip", str(tiny_clip_folder), "--dino", str(tiny_dino_folder),
            "--pickscore", str(tiny_clip_folder), "--pickscore-processor", str(tiny_clip_folder), "-o", str(out), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    for name in ("per_case.csv", "summary.json", "table.md", "report.html", "plots/clip.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"copy", "truth"}
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert (
        summary["truth"]["mean"]["psnr"] > summary["copy"]["mean"]["psnr"] + 3
    )  # truth beats copying the source
    assert "| pairs | copy | 32x32 | 5 |" in (out / "table.md").read_text() and "CLIP ↑" in capsys.readouterr().out
    provenance = json.loads((out / "summary.json").read_text())["provenance"]
    assert provenance["models"]["dtype"] == "torch.float32" and str(tiny_clip_folder) in provenance["models"]["clip_embedder"]
    assert provenance["cases"] == [c.case_id for c in bench.cases] and provenance["versions"]["torch"]
    assert provenance["image_processors"]["clip_embedder"].endswith("Pil")  # EditVerse's Pillow resampling
    official = list(csv.reader((out / "per_case_editverse" / "copy.csv").open()))
    assert official[0][0] == "id" and official[0][-1] == "type" and "clip_temporal_consistency" in official[0]
    assert official[-1][0] == "Average" and len(official) == len(bench.cases) + 2
    column = official[0].index("clip_temporal_consistency")
    assert float(official[-1][column]) == pytest.approx(np.mean([float(r[column]) for r in official[1:-1]]))

    # One number recomputed by hand from the same models and the same decoded video.
    case = bench.cases[0]
    frames = read_video(root / "copy" / f"{case.case_id}.mp4").frames
    row = json.loads((out / "cases" / "copy" / f"{case.case_id}.json").read_text())
    assert row["clip"] == pytest.approx(
        temporal_consistency(load_clip_embedder(str(tiny_clip_folder))(list(frames))), abs=1e-6
    )
    scorer = load_clip_scorer(str(tiny_clip_folder))
    expected = scorer.score(scorer.image_embeddings(list(frames)), scorer.text_embedding(case.target_prompt))
    assert row["frame"] == pytest.approx(expected, abs=1e-4)


def test_resume_and_embedding_cache(bench_and_preds, tiny_clip_folder, tmp_path):
    root, bench = bench_and_preds
    models = MetricModels(clip_embedder=load_clip_embedder(str(tiny_clip_folder)))
    preds = {"copy": root / "copy"}
    first = EmbeddingCache(tmp_path / "cache")
    run(bench, preds, Scorer(models, ("clip",), first), tmp_path / "a", progress=False)
    assert (first.hits, first.misses) == (0, 2)
    second = EmbeddingCache(tmp_path / "cache")  # a new report folder: every embedding comes from the cache
    summary = run(bench, preds, Scorer(models, ("clip",), second), tmp_path / "b", progress=False)
    assert (second.hits, second.misses) == (2, 0)
    resumed = EmbeddingCache(tmp_path / "cache")  # same folder again: cases already scored are not redone
    again = run(bench, preds, Scorer(models, ("clip",), resumed), tmp_path / "b", progress=False)
    assert (resumed.hits, resumed.misses) == (0, 0) and again == summary


def test_missing_predictions_are_recorded_not_fatal(bench_and_preds, tmp_path):
    root, bench = bench_and_preds
    (tmp_path / "empty").mkdir()
    summary = run(
        bench,
        {"none": tmp_path / "empty"},
        Scorer(MetricModels(), ("motion",)),
        tmp_path / "r",
        progress=False,
    )
    assert summary["none"]["cases"] == 0 and summary["none"]["errors"] == 2


def test_runs_freeprop_when_no_predictions_are_given(bench_and_preds, tmp_path):
    root, bench = bench_and_preds
    out = tmp_path / "report"
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--metrics", "motion,gt", "--model", "tiny", "--random-weights",
                 "--steps", "1", "-o", str(out), "--device", "cpu"]) == 0  # fmt: skip
    videos = sorted((out / "predictions" / "freeprop").glob("*.mp4"))
    assert len(videos) == 2 and read_video(videos[0]).frames.shape == (5, 32, 32, 3)
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert summary["freeprop"]["cases"] == 2 and np.isfinite(summary["freeprop"]["mean"]["motion"])
    # --model beside another method's outputs: both are scored in one report (FreeProp's videos are reused)
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--metrics", "motion,gt", "--model", "tiny", "--random-weights",
                 "--steps", "1", "-o", str(out), "--device", "cpu", "--pred", f"copy={root / 'copy'}"]) == 0  # fmt: skip
    both = json.loads((out / "summary.json").read_text())["methods"]
    assert set(both) == {"copy", "freeprop"} and both["freeprop"]["mean"] == summary["freeprop"]["mean"]
    # --size: FreeProp's own outputs at another size, scored resampled (and the rows say so)
    small = tmp_path / "small"
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--metrics", "motion,gt", "--model", "tiny", "--random-weights",
                 "--steps", "1", "-o", str(small), "--device", "cpu", "--size", "16x16"]) == 0  # fmt: skip
    assert read_video(next((small / "predictions" / "freeprop").glob("*.mp4"))).frames.shape == (5, 16, 16, 3)
    row = json.loads(next((small / "cases" / "freeprop").glob("*.json")).read_text())
    assert "error" not in row and row["resampled"].startswith("resampled from 5 frames at 16x16")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pred", "x"], "NAME=FOLDER"),
        (["--metrics", "vlm"], "needs a judge"),
        (["--metrics", "psnr"], "unknown psnr"),
        (["--metrics", "video"], "--metrics video: --viclip: not given"),
        (["--metrics", "clip", "--clip", "/nowhere"], "--metrics clip: --clip: /nowhere is not a local path"),
    ],
)
def test_user_errors_are_one_line(bench_and_preds, tmp_path, capsys, extra, message):
    root, _ = bench_and_preds
    assert (
        main(
            [
                "eval",
                "--bench",
                f"pairs:{root / 'pairs'}",
                "--pred",
                f"copy={root / 'copy'}",
                "-o",
                str(tmp_path),
                *extra,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_metric_sets():
    assert parse_metrics("all", has_targets=False, has_judge=False) == (
        "clip",
        "dino",
        "frame",
        "video",
        "pick",
        "motion",
        "warp",
    )
    assert parse_metrics("classic", has_targets=True, has_judge=False) == ("motion", "warp", "gt")
    assert summarize([{"method": "m", "case_id": "1", "task": "t", "psnr": float("inf")}])["m"]["mean"] == {}


def test_cases_are_split_across_processes_with_accelerate(bench_and_preds, tmp_path):
    import os
    import subprocess
    import sys

    root, bench = bench_and_preds
    out = tmp_path / "report"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "freeprop.cli", "eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"copy={root / 'copy'}",
               "--metrics", "motion,gt", "-o", str(out), "--device", "cpu"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(p.read_text()) for p in sorted((out / "cases" / "copy").glob("*.json"))]
    assert len(rows) == len(bench.cases) == 2  # each case scored once, by one of the two processes
    assert json.loads((out / "summary.json").read_text())["methods"]["copy"]["cases"] == 2
    assert result.stdout.count("| pairs | copy |") == 1  # only the main process reports


def test_truncated_or_resized_predictions_are_errors_not_best_scores(bench_and_preds, tmp_path, capsys):
    """A 1-frame prediction, a PNG named generate.mp4 and a half-size video are errors for their cases
    (the report is still written for the rest); with --resample they are scored and say so."""
    from freeprop.video import write_image

    root, bench = bench_and_preds
    bad = tmp_path / "bad"
    one, png = bench.cases[0], bench.cases[1]
    (bad / one.case_id).mkdir(parents=True)
    write_video(bad / one.case_id / "generate.mp4", one.target[:1])  # 1 frame of a 5-frame case
    (bad / png.case_id).mkdir()
    write_image(bad / png.case_id / "frame.png", png.target[0])
    (bad / png.case_id / "frame.png").rename(bad / png.case_id / "generate.mp4")  # a PNG named .mp4
    out = tmp_path / "report"
    args = ["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"bad={bad}", "--pred", f"truth={root / 'truth'}",
            "--metrics", "motion,warp,gt", "-o", str(out), "--device", "cpu"]  # fmt: skip
    assert main(args) == 1  # some cases failed: said in one line, as a batch edit says it
    assert "could not be scored (bad 2)" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert summary["bad"]["errors"] == 2 and summary["bad"]["cases"] == 0
    assert summary["truth"]["cases"] == 2 and (out / "report.html").is_file() and (out / "table.md").is_file()
    row = json.loads((out / "cases" / "bad" / f"{one.case_id}.json").read_text())
    assert "1 frames at 32x32; the case has 5 at 32x32" in row["error"]
    small = tmp_path / "small"
    small.mkdir()
    write_video(small / f"{one.case_id}.mp4", one.target[:, ::2, ::2])  # the right frames at half size
    again = ["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"small={small}", "--metrics", "motion,warp,gt",
             "-o", str(tmp_path / "r2"), "--device", "cpu", "--resample"]  # fmt: skip
    assert main(again) == 1  # the second case has no prediction in `small`
    assert "could not be scored (small 1)" in capsys.readouterr().err
    row = json.loads((tmp_path / "r2" / "cases" / "small" / f"{one.case_id}.json").read_text())
    assert row["resampled"].startswith("resampled from 5 frames at 16x16") and row["psnr"] > 20


def test_a_rerun_into_the_same_folder_never_reports_stale_numbers(bench_and_preds, tmp_path):
    """Fewer cases, another judge reply, regenerated predictions: each changes the report as a fresh
    folder would (issue 13: old runs averaged in old cases and kept old scores)."""
    root, bench = bench_and_preds
    preds = tmp_path / "preds"
    (preds).mkdir()
    for case in bench.cases:
        write_video(preds / f"{case.case_id}.mp4", case.source)
    out = tmp_path / "report"
    base = ["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"m={preds}", "-o", str(out), "--device", "cpu"]

    def summary(*extra):
        assert main([*base, *extra]) == 0
        return json.loads((out / "summary.json").read_text())["methods"]["m"]

    first = summary("--metrics", "motion,vlm", "--judge", "stub:Total Score: 7")
    assert first["cases"] == 2 and first["mean"]["vlm"] == 7
    (tmp_path / "one.txt").write_text(bench.cases[0].case_id)
    assert summary("--metrics", "motion,vlm", "--judge", "stub:Total Score: 7", "--cases", str(tmp_path / "one.txt"))["cases"] == 1
    assert summary("--metrics", "motion,vlm", "--judge", "stub:Total Score: 2")["mean"]["vlm"] == 2
    before = summary("--metrics", "motion")["mean"]["motion"]
    for case in bench.cases:  # regenerate: now a still video
        write_video(preds / f"{case.case_id}.mp4", np.repeat(case.source[:1], len(case.source), axis=0))
    assert summary("--metrics", "motion")["mean"]["motion"] != pytest.approx(before)


def test_a_methods_own_source_is_what_it_is_judged_against(bench_and_preds, tmp_path):
    """EditVerse's layout: `<pred>/<id>/video1.mp4` is the source the method saw; an identity edit of it
    has no motion error, even when it differs from the benchmark's raw source."""
    root, bench = bench_and_preds
    preds = tmp_path / "preds"
    for case in bench.cases:
        resampled = case.source[::-1]  # the method's own copy of the source (here: played backwards)
        (preds / case.case_id).mkdir(parents=True)
        write_video(preds / case.case_id / "video1.mp4", resampled)
        # the same bytes: x264 is not always byte-deterministic between two encodes (CI saw EPE 0.07)
        shutil.copyfile(preds / case.case_id / "video1.mp4", preds / case.case_id / "generate.mp4")
    out = tmp_path / "report"
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"m={preds}", "--metrics", "motion",
                 "-o", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["methods"]["m"]["mean"]["motion"] == pytest.approx(0, abs=1e-6)
    for case in bench.cases:  # without its own source, the same output is judged against the raw one
        (preds / case.case_id / "video1.mp4").unlink()
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"m={preds}", "--metrics", "motion",
                 "-o", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["methods"]["m"]["mean"]["motion"] > 0.3


def test_all_metrics_leaves_out_what_has_no_model_at_once(bench_and_preds, tmp_path, capsys):
    """`--metrics all` without the learned metrics' models (none are in the offline cache here) runs the
    rest immediately and says what it left out — no network retries, no failure after a minute."""
    import time

    root, _ = bench_and_preds
    start = time.perf_counter()
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"copy={root / 'copy'}",
                 "-o", str(tmp_path / "r"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "metric video left out: --viclip: not given" in err and "metric clip left out" in err
    assert time.perf_counter() - start < 30
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())["methods"]["copy"]["mean"]
    assert "motion" in summary and "psnr" in summary and "clip" not in summary


def test_baselines_from_pair_shards_in_one_command(bench_and_preds, tmp_path):
    """`--baseline` writes the weight-free references' predictions and scores them beside the rest."""
    root, bench = bench_and_preds
    out = tmp_path / "r"
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"truth={root / 'truth'}", "--baseline",
                 "flow-warp", "--baseline", "copy-source", "--metrics", "gt", "-o", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert set(summary) == {"truth", "flow-warp", "copy-source"}
    copied = read_video(out / "predictions" / "copy-source" / f"{bench.cases[0].case_id}.mp4").frames
    assert np.abs(copied.astype(int) - bench.cases[0].source).mean() < 3  # copy-source is the source
    assert summary["truth"]["mean"]["psnr"] > summary["flow-warp"]["mean"]["psnr"]


def test_vlm_failures_are_shown_in_the_report(bench_and_preds, tmp_path):
    root, _ = bench_and_preds
    out = tmp_path / "r"
    assert main(["eval", "--bench", f"pairs:{root / 'pairs'}", "--pred", f"copy={root / 'copy'}", "--metrics", "vlm",
                 "--judge", "stub:no number here", "-o", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())["methods"]["copy"]["mean"]
    assert summary["vlm_failures"] == 5  # every sampled frame of each 5-frame case failed
    assert "VLM failed frames/case" in (out / "table.md").read_text()


def test_unicbench_shipped_baselines_are_scored_by_name(tmp_path):
    """UNICBench ships VACE.mp4 / anyv2v.mp4 beside each case's origin.mp4: `--shipped NAME` scores that
    file under that name; pointing `--pred` at the benchmark itself is an error per case, not a silent pick."""
    from tests.conftest import translating_clip

    source = translating_clip(5, 32, 32, dx=2, dy=0)
    case = tmp_path / "unic" / "Propagation" / "001"
    case.mkdir(parents=True)
    write_video(case / "origin.mp4", source)
    write_video(case / "VACE.mp4", source)  # follows the source's motion exactly
    write_video(case / "anyv2v.mp4", source[::-1])  # moves the other way
    (case / "caption.txt").write_text("a caption")
    out = tmp_path / "report"
    base = ["eval", "--bench", f"unic:{tmp_path / 'unic'}", "--metrics", "motion", "-o", str(out), "--device", "cpu"]
    assert main([*base, "--shipped", "VACE", "--shipped", "anyv2v", "--pred", f"wrong={case.parent}"]) == 1  # `wrong`
    methods = json.loads((out / "summary.json").read_text())["methods"]
    assert methods["VACE"]["mean"]["motion"] < 0.05 < 0.3 < methods["anyv2v"]["mean"]["motion"]
    wrong = json.loads((out / "cases" / "wrong" / "001.json").read_text())
    assert "is a benchmark case folder" in wrong["error"] and "--shipped" in wrong["error"]
    assert main(["eval", "--bench", f"pairs:{tmp_path}", "--shipped", "VACE", "-o", str(out)]) == 2
