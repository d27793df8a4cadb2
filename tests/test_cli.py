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
        (["block", "--instantiation", "softmax"], "instantiation='softmax'"),
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
    ],
)
def test_profile_bad_input_is_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
