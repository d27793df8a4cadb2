"""The command line: results on stdout, one-line errors and a non-zero exit on bad input."""
import json

import pytest

from nlbench.cli import main


def test_block_json_has_the_documented_keys(capsys):
    assert main(["block", "--channels", "16", "--shape", "2x4x4", "--batch", "2", "--repeats", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("params", "gflops", "latency_ms", "peak_mem_mb", "unsupported_ops"):
        assert key in record
    assert record["params"] == 16 * 8 * 3 + 8 * 3 + 8 * 16 + 16 + 2 * 16  # theta, phi, g, W_z, BN


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["block", "--instantiation", "softmax"], "--instantiation 'softmax' is not allowed; expected one of"),
        (["block", "--channels", "16", "--shape", "2x1x4"], "pool_kernel=(1, 2, 2) is larger"),
        (["block", "--mode", "3", "--channels", "16", "--shape", "4x4x4"], "does not divide T=4"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_malformed_shape_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["block", "--shape", "4by28"])
    assert exit_info.value.code == 2
    assert "--shape '4by28'" in capsys.readouterr().err


def test_profile_json_small_model_with_nl_blocks(capsys):
    argv = ["profile", "--width", "small", "--nl-blocks", "5", "--frames", "8", "--size", "64",
            "--batch", "2", "--repeats", "1", "--num-classes", "10", "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["unsupported_ops"] == {}
    names = [part["name"] for part in record["breakdown"]]
    assert sum(".nonlocal" in n for n in names) == 5
    assert record["gflops"] > sum(p["gflops"] for p in record["breakdown"] if ".nonlocal" in p["name"]) > 0


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["profile", "--nl-blocks", "1", "--nl-stage", "res6"], "nl_stage='res6'"),
        (["profile", "--nl-blocks", "10", "--nl-stage", "res3"], "allowed 0..4"),
        (["profile", "--width", "small", "--frames", "8", "--size", "16"], "smaller than the minimum 8x32x32"),
        (["profile", "--depth", "34", "--counts-only"], "depth=34 is not allowed"),
        (["profile", "--pools", "huge", "--counts-only"], "pools='huge' is not allowed"),
    ],
)
def test_profile_bad_input_is_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


# ------------------------------------------------------------------------------ knobs, presets, counts

from nlbench.cli import build_parser  # noqa: E402


def _options(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {s for action in sub.choices[command]._actions for s in action.option_strings}


def test_every_model_field_is_a_profile_flag_that_reaches_the_model(capsys):
    import dataclasses

    from nlbench.models import ModelConfig, make_config

    fields = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("nonlocal_knobs", "nl_preset")]
    assert {"--" + f.replace("_", "-") for f in fields} <= _options("profile")
    # the values as YAML, into ModelConfig: what --json reports is the model those fields build
    argv = ["profile", "--width", "small", "--depth", "101", "--arch", "i3d_3x1x1", "--nl-blocks", "[[res3, 1]]",
            "--pools", "paper", "--stride-on", "1x1", "--inflation", "every_other", "--num-classes", "7",
            "--frames", "8", "--size", "64", "--counts-only", "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    want = make_config(width="small", depth=101, arch="i3d_3x1x1", nl_blocks=(("res3", 1),), pools="paper",
                       stride_on="1x1", inflation="every_other", num_classes=7).build()
    assert record["params"] == sum(p.numel() for p in want.parameters())
    default = make_config(width="small", depth=101, arch="i3d_3x1x1", nl_blocks=(("res3", 1),), num_classes=7)
    assert record["params"] != sum(p.numel() for p in default.build().parameters())  # the overrides took effect


# Two command lines that between them give every knob a value other than its default (inner_channels and
# inner_ratio exclude each other), and what each non-local block of the model built must then hold.
KNOB_LINES = [
    (["--instantiation", "dot_product", "--mode", "time", "--inner-ratio", "0.25", "--pool-kernel", "2x2x2",
      "--subsample-order", "before", "--scale", "0.5", "--norm-by", "positions", "--init", "caffe2",
      "--w-z-bias", "false", "--impl", "naive"],
     lambda c: dict(instantiation="dot_product", mode="time", inner_channels=c // 4, subsample=True,
                    subsample_order="before", pool_kernel=(2, 1, 1), scale=0.5, norm_by="positions", init="caffe2",
                    W_z_bias=False, impl="naive")),
    (["--instantiation", "gaussian", "--mode", "space", "--inner-channels", "4", "--no-subsample", "--scale",
      "--init", "zero_conv", "--impl", "sdpa"],
     lambda c: dict(instantiation="gaussian", mode="space", inner_channels=4, subsample=False, scale=c**-0.5,
                    init="zero_conv", impl="sdpa")),
]


@pytest.mark.parametrize("knobs,expected", KNOB_LINES)
def test_knob_flags_reach_every_block_of_the_profiled_model(knobs, expected, monkeypatch, capsys):
    import nlbench.measure
    from nlbench.ops import NonLocalBlock

    measured = []
    real = nlbench.measure.profile_module
    monkeypatch.setattr(nlbench.measure, "profile_module", lambda m, *a, **k: measured.append(m) or real(m, *a, **k))
    model = ["profile", "--width", "small", "--nl-blocks", "5", "--frames", "16", "--size", "32", "--counts-only"]
    assert main([*model, *knobs]) == 0
    blocks = [m for m in measured[0].modules() if isinstance(m, NonLocalBlock)]
    assert len(blocks) == 5
    for block in blocks:
        for name, value in expected(block.in_channels).items():
            assert getattr(block, name) == value, (block.in_channels, name)
    # A bad value: one line naming the flag, exit 2, and nothing built or measured.
    measured.clear()
    capsys.readouterr()
    assert main([*model, *knobs, "--norm-by", "mean"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--norm-by 'mean' is not allowed" in err and not measured


BAD = [
    ("--nl-preset", "caffe3", "one of ('paper', 'released'"),
    ("--instantiation", "softmax", "one of ('gaussian'"),
    ("--mode", "spatial", "one of ('spacetime', 'space', 'time') or a temporal group size"),
    ("--subsample-order", "during", "one of ('after', 'before')"),
    ("--pool-kernel", "1x2", None),  # valid: not an error
    ("--pool-kernel", "2by2", "an int or 1 to 3 positive ints"),
    ("--scale", "-1", "false, true or a positive float"),
    ("--norm-by", "mean", "one of ('keys', 'positions')"),
    ("--init", "xavier", "one of ('paper', 'caffe2'"),
    ("--w-z-bias", "maybe", "true or false"),
    ("--impl", "fastest", "one of ('auto', 'naive'"),
    ("--inner-channels", "0", "a positive int"),
    ("--inner-ratio", "9", "a number in (0, 4]"),
    ("--subsample", "sometimes", "true or false"),
]


@pytest.mark.parametrize("command", ["block", "profile"])
@pytest.mark.parametrize("flag,value,expected", [b for b in BAD if b[2]])
def test_bad_knob_or_preset_is_one_line_naming_flag_and_allowed_values(command, flag, value, expected, capsys):
    assert main([command, flag, value, "--counts-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{flag} {value!r} is not allowed" in err and expected in err


def test_block_counts_only_with_a_preset(capsys):
    argv = ["block", "--channels", "16", "--shape", "3x5x7", "--nl-preset", "mmaction2", "--instantiation",
            "dot_product", "--counts-only", "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["latency_ms"] is None and record["peak_mem_mb"] is None and record["timings_ms"] == {}
    assert record["params"] == 16 * 8 * 3 + 8 * 3 + 8 * 16 + 2 * 16  # mmaction2: no bias on W_z
    # Every knob given on the command line reaches the block.
    argv = ["block", "--channels", "16", "--shape", "4x6x6", "--instantiation", "concatenation", "--mode", "2",
            "--inner-ratio", "0.25", "--pool-kernel", "2x2x2", "--subsample-order", "before", "--norm-by",
            "positions", "--init", "caffe2", "--w-z-bias", "false", "--impl", "naive", "--counts-only"]
    assert main(argv) == 0
    title = capsys.readouterr().out
    for needle in ("inner=4", "concatenation", "mode=2", "(2, 2, 2) (before)", "norm_by=positions", "init=caffe2",
                   "W_z_bias=False", "impl=naive"):
        assert needle in title.replace("\n", " ")


def test_profile_reproduces_mmaction2_nl_i3d_counts(capsys):
    # mmaction2's i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb: 35.4 M params,
    # 59.3 GFLOPs (its metafile counts at 256x256); its 0.x metafile gives the exact 35,397,840.
    argv = ["profile", "--depth", "50", "--arch", "i3d_3x1x1", "--nl-blocks", "5", "--instantiation", "dot_product",
            "--frames", "32", "--size", "256", "--counts-only", "--nl-preset", "mmaction2", "--variant", "mmaction2",
            "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["params"] == 35_397_840
    assert round(record["gflops"], 1) == 59.3
    assert record["unsupported_ops"] == {}


@pytest.mark.slow
def test_profile_reproduces_mmaction2_i3d_counts(capsys):
    argv = ["profile", "--depth", "50", "--arch", "i3d_3x1x1", "--frames", "32", "--size", "256", "--counts-only",
            "--variant", "mmaction2", "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["params"] == 28_043_472 and round(record["gflops"], 1) == 43.5


def test_a_keyerror_is_a_bug_not_a_user_error(monkeypatch):
    # user input is checked where it is read (ConfigError, exit 2); a KeyError keeps its traceback
    from nlbench import cli

    def broken(args):
        raise KeyError("a lookup the code got wrong")

    monkeypatch.setattr(cli, "cmd_train", broken)
    with pytest.raises(KeyError, match="a lookup the code got wrong"):
        cli.main(["train", "configs/smoke.yaml"])
