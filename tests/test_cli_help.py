"""How ``ttc <stage> --help`` reads, and how a mistyped option or value is refused (issue 35 item 4).

Run through ``ttcompute.cli.main`` in-process, as a user sees it: the help on stdout, an error as one
``ttc: error:`` line and return code 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest

from ttcompute._version import __version__
from ttcompute.cli import STAGES, main
from ttcompute.core.config import parse_stage_args
from ttcompute.core.prm_format_names import PRM_FORMAT_CHOICES
from ttcompute.trainers.prm_config import PRMConfig


@pytest.fixture(autouse=True)
def _fixed_terminal(tmp_path, monkeypatch):
    # argparse wraps to $COLUMNS; a stage that got past its checks would write under the cwd.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)


def _help(capsys, stage: str, flag: str = "--help") -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([stage, flag])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ttc: error: ")
    return lines[0]


def _entry(text: str, flag: str) -> str:
    """The help entry of ``flag`` (its line and the indented lines under it), whitespace collapsed."""
    match = re.search(rf"^  {re.escape(flag)}\b.*(?:\n {{5,}}.*)*", text, flags=re.MULTILINE)
    assert match is not None, f"{flag} has no entry"
    return " ".join(match.group(0).split())


def _config_types(stage: str) -> list[type]:
    return [getattr(importlib.import_module(module), name) for module, name in STAGES[stage][1]]


# --- order and length --------------------------------------------------------------------------


def test_train_prm_help_shows_the_prm_options_first(capsys):
    text = _help(capsys, "train-prm")
    head = "\n".join(text.splitlines()[:40])
    for flag in ("--model_name_or_path", "--prm_kind", "--step_separator", "--dataset_name", "--max_length"):
        assert f"\n  {flag} " in head, flag
    assert "PRMConfig:" in head
    # TrainingArguments' own options are named once, at the end, and described only by --help-all.
    assert "--adam_beta1" not in head
    assert "--help-all" in head
    assert len(text.splitlines()) < 150
    inherited = text[text.index("transformers.TrainingArguments (inherited):") :]
    assert "--output_dir" in inherited and "--adam_beta1" in inherited
    assert re.search(r"^  --adam_beta1 ", text, flags=re.MULTILINE) is None


def test_help_all_describes_the_inherited_options_after_the_stage_s_own(capsys):
    text = _help(capsys, "train-prm", "--help-all")
    adam_help = PRMConfig.__dataclass_fields__["adam_beta1"].metadata["help"]
    assert " ".join(adam_help.split()) in _entry(text, "--adam_beta1")
    assert text.index("PRMConfig:") < text.index("transformers.TrainingArguments (inherited):")


@pytest.mark.parametrize("stage", ["train-prm", "train-reviser", "train-policy", "search", "demo", "sample"])
def test_the_stage_s_own_config_is_the_first_group(capsys, stage):
    text = _help(capsys, stage)
    groups = re.findall(r"^(\S[^\n]*):$", text, flags=re.MULTILINE)
    assert groups[0] == "options"  # -h, --help-all, --config
    assert groups[1] == _config_types(stage)[-1].__name__, groups


@pytest.mark.parametrize("stage", list(STAGES))
def test_help_names_every_option_and_help_all_describes_it(capsys, stage):
    short = _help(capsys, stage)
    full = _help(capsys, stage, "--help-all")
    for dtype in _config_types(stage):
        for f in dataclasses.fields(dtype):
            if f.init:
                assert re.search(rf"--{f.name}\b", short), (stage, f.name)
                _entry(full, f"--{f.name}")


# --- defaults --------------------------------------------------------------------------------------


def test_an_invisible_default_is_shown_escaped(capsys):
    entry = _entry(_help(capsys, "train-prm"), "--step_separator")
    assert entry.endswith("(default: '\\n\\n')"), entry


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_option_states_its_default_twice(capsys, stage):
    text = _help(capsys, stage, "--help-all")
    entries = re.findall(r"^  --.*(?:\n {5,}.*)*", text, flags=re.MULTILINE)
    doubled = [" ".join(e.split()) for e in entries if len(re.findall(r"default\s*:", e, flags=re.I)) > 1]
    assert not doubled, doubled


def test_demo_learning_rate_says_its_default_once(capsys):
    entry = _entry(_help(capsys, "demo"), "--token_prm_learning_rate")
    assert entry.count("default") == 1 and "None" not in entry, entry


# --- choices ---------------------------------------------------------------------------------------


def test_choices_are_listed_in_help(capsys):
    assert "{token_classification,likelihood}" in _entry(_help(capsys, "train-prm"), "--prm_kind")
    assert "{" + ",".join(PRM_FORMAT_CHOICES) + "}" in _entry(_help(capsys, "search"), "--prm_format")


@pytest.mark.parametrize(
    ("argv", "listed"),
    [
        (["search", "--prm_format", "shepherd"], "'math-shepherd'"),
        (["search", "--methods", "best_of_n", "beam"], "'beam_search'"),
        (["train-prm", "--prm_kind", "head"], "'likelihood'"),
        (["label", "--label_type", "binary"], "'hard'"),
        (["demo", "--reviser_rounds", "3"], "1, 2"),
    ],
)
def test_a_value_outside_the_choices_is_a_one_line_error(capsys, argv, listed):
    line = _error_line(capsys, argv)
    assert "invalid choice: " in line and argv[-1] in line and argv[1] in line
    assert listed in line


def test_a_yaml_value_outside_the_choices_names_the_file_line_and_key(tmp_path, capsys):
    config = tmp_path / "prm.yaml"
    config.write_text("max_length: 64\nprm_kind: head\n")
    line = _error_line(capsys, ["train-prm", "--config", str(config)])
    assert f"{config}:2: key 'prm_kind'" in line and "invalid choice: 'head'" in line


def test_a_set_checked_by_its_config_is_listed_and_refused_in_one_line(capsys):
    # report_to and answer_extraction keep their configs' own messages (other tests pin them).
    assert "--report_to {none,wandb}" in _help(capsys, "report")
    assert "--answer_extraction {strict,lenient}" in _help(capsys, "sample")
    assert "report_to must be none or wandb" in _error_line(capsys, ["report", "--report_to", "tb"])


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_default_is_one_of_its_choices(stage):
    for dtype in _config_types(stage):
        for f in dataclasses.fields(dtype):
            choices = f.metadata.get("choices")
            if choices is None or not f.init:
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            values = default if isinstance(default, list) else [default]
            assert all(v is None or v in choices for v in values), (stage, f.name, default, choices)


# --- no abbreviations; did you mean --------------------------------------------------------------


def test_an_abbreviated_flag_is_refused_with_a_suggestion(capsys):
    line = _error_line(capsys, ["select", "--search_di", "runs/search"])
    assert line == "ttc: error: ttc select: unknown option --search_di; did you mean --search_dir?"


def test_an_abbreviation_with_equals_is_refused_too(capsys):
    line = _error_line(capsys, ["train-prm", "--step_sep=x"])
    assert "unknown option --step_sep; did you mean --step_separator?" in line


def test_an_unknown_yaml_key_suggests_the_nearest(tmp_path, capsys):
    config = tmp_path / "select.yaml"
    config.write_text("aggregation: min\nsearch_di: runs/search\n")
    line = _error_line(capsys, ["select", "--config", str(config)])
    assert f"{config}:2: unknown key 'search_di' for ttc select; did you mean search_dir?" in line


def test_a_far_off_flag_gets_no_suggestion(capsys):
    line = _error_line(capsys, ["select", "--zzzzzz", "1"])
    assert line.endswith("unknown option --zzzzzz")


def test_a_mistyped_stage_gets_a_suggestion(capsys):
    assert "unknown stage 'serch'; did you mean search?" in _error_line(capsys, ["serch"])


def test_hyphenated_spellings_still_parse():
    (config,) = parse_stage_args((PRMConfig,), ["--step-separator", "\n", "--prm-kind", "likelihood"], "t")
    assert config.step_separator == "\n" and config.prm_kind == "likelihood"


# --- version ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys, flag):
    assert main([flag]) == 0
    assert capsys.readouterr().out.strip() == f"ttcompute {__version__}"
