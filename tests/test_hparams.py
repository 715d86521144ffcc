"""HParams: validation, the dict round trip, and the command line generated from it."""

import pytest

from headstart.errors import HeadstartError
from headstart.hparams import HParams, cli_flag


def test_invalid_hyperparameters_are_user_errors():
    with pytest.raises(HeadstartError, match="invalid dropout"):
        HParams(dropout=1.5)
    with pytest.raises(HeadstartError, match="invalid class_weights"):
        HParams(class_weights="sometimes")


# A value other than the default for every field, as the command line would write it.
NON_DEFAULT = {
    "backbone": "efficientnet_lite0",
    "hidden": "64,32",
    "dropout": "0.3",
    "tta": "flip",  # (with --no-flip it is refused: tested below, then dropped from the round trip)
    "budget": "30",
    "solver": "adamw",
    "l2": "0.05",
    "epochs": "7",
    "batch_size": "16",
    "learning_rate": "0.002",
    "weight_decay": "0.01",
    "label_smoothing": "0.1",
    "patience": "3",
    "class_weights": "auto",
    "calibrate": None,
    "seed": "7",
    "augment": "light",
    "views": "2",
    "flip": None,
    "aug_scale": "0.5",
    "aug_rotation": "5",
    "aug_color": "0.2",
    "fine_tune": "all",
    "fine_tune_epochs": "3",
    "fine_tune_lr": "0.0003",
    "fine_tune_patience": "2",
    "warmup_epochs": "0",
    "grad_clip": "2.0",
    "precision": "bf16",
    "val_fraction": "0.2",
    "test_fraction": "0.15",
    "group_by": "auto",
    "near_duplicate_threshold": "0.8",
}


def test_every_field_has_a_flag_with_help_in_its_group():
    from dataclasses import fields

    from headstart.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {a.dest: a for a in train._actions}
    groups = {a.dest: g.title for g in train._action_groups for a in g._group_actions}
    for f in fields(HParams):
        assert f.name in actions, f"HParams.{f.name} has no flag"
        assert cli_flag(f) in actions[f.name].option_strings and actions[f.name].help
        assert groups[f.name] == f.metadata["cli"]["group"]
    assert set(NON_DEFAULT) == {f.name for f in fields(HParams)}  # this test knows every field


def test_non_default_flags_round_trip_through_model_json(colour_folder, tmp_path):
    from dataclasses import fields

    import headstart
    from headstart.cli import build_parser
    from headstart.cli.arguments import hparams_from_args

    argv = ["train", "data"]
    for f in fields(HParams):
        argv += [cli_flag(f)] + ([NON_DEFAULT[f.name]] if NON_DEFAULT[f.name] is not None else [])
    with pytest.raises(HeadstartError, match="--tta flip mirrors images, but --no-flip"):
        hparams_from_args(build_parser().parse_args(argv))
    argv.remove("--tta")
    argv.remove("flip")
    hp = hparams_from_args(build_parser().parse_args(argv))
    assert all(getattr(hp, f.name) != f.default for f in fields(HParams) if f.name != "tta")
    assert hp.hidden == (64, 32) and hp.fine_tune == "all" and hp.flip is False and hp.calibrate is True

    clf = headstart.train(colour_folder, epochs=2, quiet=True)
    clf.record.hparams = hp
    reloaded = headstart.load(clf.save(tmp_path / "m"))
    assert reloaded.hparams == hp


def test_a_bad_flag_value_is_a_usage_error(capsys):
    from headstart.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data", "--hidden", "64,wide"])
    assert exit_info.value.code == 2
    assert "expected comma-separated layer widths like 512,256, got '64,wide'" in capsys.readouterr().err


def test_replace_checks_names_and_values():
    hp = HParams().replace(epochs=5, hidden=[8])
    assert hp.epochs == 5 and hp.hidden == (8,)
    with pytest.raises(HeadstartError, match="unknown training setting 'epoch'"):
        HParams().replace(epoch=5)
    with pytest.raises(HeadstartError, match="invalid epochs: 0"):
        HParams().replace(epochs=0)


def test_presets_set_backbone_and_tta_and_given_flags_win(capsys, monkeypatch):
    from headstart.cli import build_parser
    from headstart.cli.arguments import hparams_from_args
    from headstart.presets import PRESETS

    best = HParams(epochs=5).with_preset("best")
    assert (best.backbone, best.tta, best.epochs) == (PRESETS["best"]["settings"]["backbone"], "flip", 5)
    assert HParams().with_preset("fast") == HParams()  # fast is today's default
    with pytest.raises(HeadstartError, match="unknown preset 'turbo'"):
        HParams().with_preset("turbo")
    parse = build_parser().parse_args
    hp = hparams_from_args(parse(["train", "data", "--preset", "best", "--backbone", "mobilenet_v2"]))
    assert (hp.backbone, hp.tta) == ("mobilenet_v2", "flip")  # the flag given wins over the preset
    hp = hparams_from_args(parse(["train", "data", "--preset", "best", "--no-flip"]))
    assert (hp.backbone, hp.tta, hp.flip) == (PRESETS["best"]["settings"]["backbone"], "none", False)
    hp = hparams_from_args(parse(["train", "data", "--preset", "balanced", "--epochs", "100"]))
    assert hp.backbone == PRESETS["balanced"]["settings"]["backbone"] and hp.epochs == 100
    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside the summaries
    with pytest.raises(SystemExit):
        parse(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, preset in PRESETS.items():
        assert f"{name}: {preset['summary']}" in help_text


def test_limits_and_choices_are_declared_once_and_shared_by_the_cli_and_the_studio(capsys):
    from dataclasses import fields

    from headstart.cli import main
    from headstart.hparams import choices, settings_model
    from headstart.studio.options import TRAIN_SETTINGS, TrainSettings

    everything = settings_model().model_json_schema()["properties"]
    studio = TrainSettings.model_json_schema()["properties"]
    assert set(studio) == set(TRAIN_SETTINGS) and all(studio[name] == everything[name] for name in studio)
    assert set(everything) == {f.name for f in fields(HParams)}
    assert everything["epochs"]["minimum"] == 1 and everything["dropout"]["exclusiveMaximum"] == 1
    assert choices("augment") == ("none", "light", "strong") and choices("fine_tune") is None  # N or "all"
    with pytest.raises(HeadstartError, match="invalid hidden: .*at most 8 items"):
        HParams(hidden=(8,) * 9)  # a bundle holds at most 8 hidden layers: refused before training, not at load
    with pytest.raises(HeadstartError, match="invalid fine_tune: 'some'"):
        HParams(fine_tune="some")
    assert HParams(fine_tune="3").fine_tune == 3 and HParams(fine_tune="all").fine_tune == "all"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data", "--augment", "bogus"])
    assert exit_info.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", "data", "--out", "x", "--tta", "mirror"])  # embed's flags come from the same fields
    assert "--tta: invalid choice: 'mirror'" in capsys.readouterr().err


def test_backbones_lists_the_weights_requirements(capsys):
    from headstart.backbones import weights_requirements
    from headstart.cli import main

    assert main(["backbones", "--requirements"]) == 0
    assert capsys.readouterr().out.split() == weights_requirements()
