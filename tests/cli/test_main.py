import subprocess
import sys

import pytest

from freeprop import __version__
from freeprop.cli import build_parser, main
from freeprop.cli.common import sample_clips


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "frame0" in out and "app" in out
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"demo", "frame0", "edit", "app", "train", "data", "eval", "presets", "heads"}
    data = commands["data"]._subparsers._group_actions[0].choices
    assert set(data) == {"synth", "build", "inspect", "review", "finetune-vace", "repair"}
    steps = commands["eval"]._subparsers._group_actions[0].choices
    assert set(steps) == {"select", "first-frames"}


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"freeprop {__version__}"


def test_sample_clips_are_bundled():
    assert [p.name for p in sample_clips()] == ["sample_crossing.mp4", "sample_pan.mp4"]


HEAVY = ("torch", "diffusers", "transformers", "accelerate", "peft", "gradio", "av", "cv2")


def test_the_command_line_starts_without_heavy_libraries():
    """`freeprop --help` (and every command's parsing) imports none of the model or video libraries:
    what keeps start-up instant (benchmarks/startup.py measures it)."""
    code = (
        "import sys; from freeprop.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""


def test_ctrl_c_while_a_command_starts_is_one_line_exit_130(monkeypatch, capsys):
    import freeprop.cli.edit as edit

    def interrupted(args):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while torch was importing

    monkeypatch.setattr(edit.Editor, "__init__", lambda self, args, **kw: interrupted(args))
    assert main(["edit", "a.mp4", "b.png"]) == 130
    assert capsys.readouterr().err.strip() == "freeprop: interrupted"


def test_an_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["edt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'edt'" in err and "\n" not in err
