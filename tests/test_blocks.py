"""The block contract (nlbench.ops.registry): any block placed by name or import path, and everything downstream
of the model (init, placement, minimum input, checkpoints, frozen BN, FLOPs, geometry, run ids, configs, CLI)
working for it without knowing its class."""
from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from nlbench.cli import main
from nlbench.measure import count_flops, nonlocal_geometry, profile_module
from nlbench.models import ModelConfig, load_pretrained, make_config
from nlbench.ops.registry import fingerprint, registered, resolve_block
from nlbench.training import ConfigError, RunConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(depth=50, width="small", num_classes=5, dropout=0.0)
CLIP = (2, 3, 8, 64, 64)

# A researcher's block as the README shows one: no nlbench base class, only the contract.
GATE = '''
import torch
from torch import nn


class Gate(nn.Module):
    """z = x + W(mean over T, H, W of x), W starting at zero."""

    def __init__(self, channels, scale=1.0):
        super().__init__()
        self.W = nn.Conv3d(channels, channels, 1)
        self.scale = scale

    def zero_init_last(self):
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def forward(self, x):
        return x + self.scale * self.W(x.mean((2, 3, 4), keepdim=True))
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module outside the package, on sys.path (spawned sweep workers inherit it): returns (name, path)."""
    name = f"userblocks_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "userpkg"
    folder.mkdir()
    path = folder / f"{name}.py"
    path.write_text(GATE)
    monkeypatch.syspath_prepend(str(folder))
    return name, path


# ----------------------------------------------------------------------------------------- registry


def test_registered_blocks_and_paths_resolve(user_module):
    name, _ = user_module
    assert {"nonlocal", "simplified_nl", "global_context", "cgnl"} <= set(registered())
    assert resolve_block(f"{name}:Gate").__name__ == "Gate"


@pytest.mark.parametrize("value, message", [
    ("no_such_block", "model.block='no_such_block' is not a registered block"),
    ("no_such_module_xyz:Block", "cannot import module 'no_such_module_xyz'"),
    ("nlbench.ops.registry:Nothing", "has no 'Nothing'"),
])
def test_a_bad_block_is_a_one_line_config_error(value, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"model": {"nl_blocks": 1, "block": value}}, "cfg.yaml")
    assert str(err.value).startswith("cfg.yaml: ") and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("model, message", [
    ({"block": "global_context", "block_args": {"ratoi": 0.25}}, "unexpected keyword argument 'ratoi'"),
    ({"block": "global_context", "block_args": {"ratio": 2}}, "ratio=2 is not allowed"),
    ({"block_args": {"ratio": 0.25}}, "block_args={'ratio': 0.25} is not allowed with block='nonlocal'"),
    ({"block_position": "before_block"}, "block_position='before_block' is not allowed"),
])
def test_bad_block_arguments_are_one_line_config_errors(model, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"model": {"nl_blocks": 1, **model}}, "cfg.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_block_that_breaks_the_contract_is_refused_when_the_config_is_made(tmp_path, monkeypatch):
    (tmp_path / "badblocks.py").write_text("from torch import nn\nclass Shrink(nn.Module):\n"
                                           "    def __init__(self, c):\n        super().__init__()\n"
                                           "    def forward(self, x):\n        return x[:, :1]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"the output must have the input's shape \(2, 32, 4, 4, 4\)"):
        RunConfig.from_dict({"model": {"nl_blocks": 1, "block": "badblocks:Shrink"}})


# ------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("position", ["after_block", "in_residual"])
@pytest.mark.parametrize("block, args", [("nonlocal", {}), ("simplified_nl", {}), ("global_context", {"ratio": 0.25}),
                                         ("cgnl", {}), ("USER:Gate", {"scale": 2.0})])
def test_a_fresh_block_leaves_the_backbone_function_unchanged(block, args, position, user_module):
    """Every block starts as the identity (zero_init_last) and the backbone's weights do not depend on the
    blocks (per-layer init streams): the model computes exactly what the plain C2D of the same seed does."""
    block = block.replace("USER", user_module[0])
    plain = ModelConfig(**SMALL).build(seed=3).eval()
    model = ModelConfig(**SMALL, nl_blocks=5, block=block, block_args=args, block_position=position).build(seed=3)
    model.eval()
    names = list(model.placed_blocks())
    assert len(names) == 5
    inside = position == "in_residual"
    assert all(n.endswith(".plugin") == inside and ("nonlocal" in n) != inside for n in names)
    x = torch.randn(CLIP)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_in_residual_applies_the_block_before_the_shortcut_is_added(user_module):
    """GCNet's position: relu(block(bn3(conv3 ...)) + identity), not block(relu(... + identity))."""
    model = ModelConfig(**SMALL, nl_blocks=(("res4", 2),), block=f"{user_module[0]}:Gate",
                        block_position="in_residual").build(seed=0).eval()
    residual = model.residual_block("res4", 2)
    torch.nn.init.normal_(residual.plugin.W.weight)
    seen = {}
    residual.bn3.register_forward_hook(lambda m, a, out: seen.setdefault("branch", out))
    residual.register_forward_pre_hook(lambda m, a: seen.setdefault("input", a[0]))
    residual.register_forward_hook(lambda m, a, out: seen.setdefault("output", out))
    with torch.no_grad():
        model(torch.randn(CLIP))
        want = torch.relu(residual.plugin(seen["branch"]) + seen["input"])
    torch.testing.assert_close(seen["output"], want)


def test_a_block_s_minimum_input_decides_the_model_s(tmp_path, monkeypatch):
    (tmp_path / "bigblocks.py").write_text(
        "from torch import nn\nclass Needs8(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n"
        "    def minimum_input(self):\n        return (1, 8, 8)\n    def forward(self, x):\n        return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = ModelConfig(**SMALL, nl_blocks=1, block="bigblocks:Needs8").build()
    (minimum, reason) = model.minimum_input()
    assert minimum == (8, 128, 128) and reason == "the block layer3.nonlocal4 needs a res4 map of at least 1x8x8"
    with pytest.raises(ValueError, match="smaller than the minimum 8x128x128"):
        model(torch.randn(1, 3, 8, 64, 64))


def test_a_backbone_checkpoint_loads_into_a_model_with_any_block():
    """The blocks' weights are new, never 'missing backbone weights' (strict loading passes)."""
    plain = ModelConfig(**SMALL).build(seed=1)
    model = ModelConfig(**SMALL, nl_blocks=5, block="cgnl", block_position="in_residual").build(seed=2)
    report = load_pretrained(model, plain.state_dict())
    assert report.missing and all(".plugin." in k for k in report.missing)
    assert torch.equal(model.state_dict()["layer3.3.conv1.weight"], plain.state_dict()["layer3.3.conv1.weight"])


class _Normed(nn.Module):
    """z = x + BN(W x), BN gamma at 0: frozen there, it would stay off for ever."""

    def __init__(self, channels: int):
        super().__init__()
        self.W = nn.Conv3d(channels, channels, 1)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x):
        return x + self.bn(self.W(x))


def test_frozen_bn_leaves_the_norms_of_any_placed_block_trainable(monkeypatch):
    from nlbench.ops import registry
    from nlbench.training import VideoClassifier
    from nlbench.training.config import RecipeSection

    monkeypatch.setitem(registry._REGISTRY, "normed_test", _Normed)
    model = ModelConfig(**SMALL, nl_blocks=5, block="normed_test", block_position="in_residual").build(seed=0)
    module = VideoClassifier(model, RecipeSection(freeze_bn=True), total_steps=1)
    frozen = {id(m) for m in module._frozen_bn()}
    norms = [b.bn for b in model.placed_blocks().values()]
    assert len(norms) == 5 and not any(id(n) in frozen for n in norms) and all(n.weight.requires_grad for n in norms)
    assert id(model.bn1) in frozen and not model.bn1.weight.requires_grad
    assert id(model.residual_block("res4", 1).bn3) in frozen  # the residual block around a plugin is still frozen


# ---------------------------------------------------------------------------------------- measuring


class _Hidden(nn.Module):
    """A block whose work fvcore cannot see (a sum), which says what it costs."""

    def __init__(self, channels: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(channels))

    def extra_macs(self, shape) -> int:
        return 7 * shape[0] * shape[1]

    def forward(self, x):
        return x + (x * self.w[:, None, None, None]).sum((2, 3, 4), keepdim=True)


def test_extra_macs_are_added_to_the_block_and_every_module_above_it():
    model = nn.Sequential(nn.Sequential(_Hidden(4)))
    n = count_flops(model, torch.randn(2, 4, 2, 3, 3))
    assert n.total == 7 * 2 * 4
    assert n.by_module[""] == n.by_module["0"] == n.by_module["0.0"] == 7 * 2 * 4
    assert n.unsupported_by_module["0.0"] == {"aten::sum": 1}


def test_profile_breakdown_has_every_placed_block_and_what_it_could_not_count(monkeypatch):
    from nlbench.ops import registry

    monkeypatch.setitem(registry._REGISTRY, "hidden_test", _Hidden)
    model = ModelConfig(**SMALL, nl_blocks=5, block="hidden_test").build()
    profile = profile_module(model, (3, 8, 64, 64), timing=False)
    blocks = [r for r in profile.breakdown if "nonlocal" in r["name"]]
    assert [r["name"] for r in blocks] == list(model.placed_blocks())
    assert all(r["unsupported_ops"] == {"aten::sum": 1} and r["gflops"] > 0 for r in blocks)


@pytest.mark.parametrize("kwargs", [
    dict(nl_blocks=5), dict(nl_blocks=5, mode="space"), dict(nl_blocks=5, mode="time", pool_kernel=(2, 1, 1)),
    dict(nl_blocks=1, mode=2, pool_kernel=(2, 2, 2)), dict(nl_blocks=1, subsample=False),
    dict(nl_blocks=1, nl_stage="res5"), dict(nl_blocks=1, instantiation="concatenation", mode="time"),
])
def test_the_non_local_block_s_keys_are_the_keys_its_attention_has(kwargs):
    """The geometry table reads keys() from the formula: it must be what the block computes (its recorded
    attention's last axis, measured)."""
    model = make_config(**SMALL, **kwargs).build().eval()
    for block in model.placed_blocks().values():
        block.record_attention = True
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 64, 64))
    geometry = nonlocal_geometry(model, (3, 16, 64, 64))
    assert [g["keys"] for g in geometry] == [b.attention.shape[-1] for b in model.placed_blocks().values()]


def test_geometry_of_global_blocks_is_every_position():
    model = ModelConfig(**SMALL, nl_blocks=5, block="global_context").build()
    geometry = nonlocal_geometry(model, (3, 16, 64, 64))
    assert [(g["input_thw"], g["keys"]) for g in geometry] == [([2, 8, 8], 128)] * 2 + [([2, 4, 4], 32)] * 3


# ------------------------------------------------------------------------------------------ identity


def _cfg(**model) -> RunConfig:
    return RunConfig.from_dict({"model": {"nl_blocks": 5, **model}})


def test_the_block_is_part_of_the_run_id(user_module):
    name, _ = user_module
    ids = [_cfg().run_id, _cfg(block="global_context").run_id, _cfg(block="global_context", block_args={"ratio": 0.25}).run_id,
           _cfg(block="global_context", block_position="in_residual").run_id, _cfg(block="simplified_nl").run_id,
           _cfg(block=f"{name}:Gate").run_id]
    assert len(set(ids)) == len(ids)
    # The non-local knobs do not split another block's runs, and the block's arguments in any order are one run.
    assert _cfg(block="cgnl", instantiation="dot_product").run_id == _cfg(block="cgnl").run_id
    assert (_cfg(block="cgnl", block_args={"groups": 4, "scale": True}).run_id
            == _cfg(block="cgnl", block_args={"scale": True, "groups": 4}).run_id)


def test_the_default_block_keeps_the_run_ids_of_existing_runs():
    """Every committed run's config (written before model.block existed) still hashes to its directory."""
    configs = sorted((REPO / "results").glob("*/runs/*/config.yaml"))
    assert configs
    for path in configs:
        assert RunConfig.load(path).run_id == path.parent.name
    explicit = _cfg(block="nonlocal", block_args={}, block_position="after_block")
    assert explicit.run_id == _cfg().run_id


def test_editing_a_researcher_s_block_changes_its_run_id(user_module):
    name, path = user_module
    before = _cfg(block=f"{name}:Gate").run_id
    assert fingerprint(f"{name}:Gate") is not None and fingerprint("global_context") is None
    path.write_text(GATE.replace("self.scale * self.W", "2 * self.scale * self.W"))
    assert _cfg(block=f"{name}:Gate").run_id != before


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_lists_the_blocks(capsys):
    assert main(["blocks", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["global_context"]["args"] == {"ratio": 1 / 16}
    assert entries["cgnl"]["args"] == {"inner_channels": None, "groups": 8, "scale": False}
    assert "zero_init_last" in entries["simplified_nl"]["members"]


def test_cli_block_costs_any_block(capsys, user_module):
    argv = ["block", "--channels", "16", "--shape", "2x4x4", "--counts-only", "--json"]
    assert main([*argv, "--block", "global_context", "--block-args", "{ratio: 0.25}"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["params"] == 16 + 1 + 16 * 4 + 4 + 2 * 4 + 4 * 16 + 16  # W_k, W_v1, LN, W_v2
    assert main([*argv, "--block", f"{user_module[0]}:Gate"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 16 * 16 + 16
    assert main([*argv, "--block", "cgnl", "--instantiation", "dot_product"]) == 2
    assert "--instantiation is a non-local knob" in capsys.readouterr().err


def test_cli_profile_places_any_block(capsys):
    argv = ["profile", "--width", "small", "--frames", "8", "--size", "64", "--counts-only", "--json",
            "--nl-blocks", "5"]
    assert main([*argv, "--block", "global_context", "--block-position", "in_residual"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in profile["breakdown"] if r["name"].endswith("plugin")] == [
        "layer2.1.plugin", "layer2.3.plugin", "layer3.1.plugin", "layer3.3.plugin", "layer3.5.plugin"]


# ------------------------------------------------------------------------------ a researcher's block, end to end


def _profile_folder(folder: Path) -> Path:
    """profiles.yaml with a smoke profile whose runs are measured (params, GFLOPs, latency, memory), no W&B."""
    import yaml

    config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    config["wandb"] = {"enabled": False}
    folder.mkdir(exist_ok=True)
    (folder / "smoke.yaml").write_text(yaml.safe_dump(config))
    profiles = {"smoke": {"config": str(folder / "smoke.yaml"), "seeds": [0]}}
    (folder / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    return folder


def _sweep(table: Path, results: Path, capsys, workers: int = 2) -> str:
    assert main(["sweep", str(table), "--profile", "smoke", "--workers", str(workers), "--results", str(results),
                 "--quiet"]) == 0
    return capsys.readouterr().out


@pytest.mark.integration
def test_a_researcher_s_block_through_a_sweep_with_two_workers(tmp_path, monkeypatch, capsys, user_module):
    import pandas as pd
    import yaml

    from nlbench.report.build import gains, report_table
    from nlbench.sweep.spec import build_sweep

    name, source = user_module
    monkeypatch.chdir(tmp_path)
    folder = _profile_folder(tmp_path / "tables")
    rows = [{"row": "C2D", "model": {"nl_blocks": 0}},
            {"row": "Gate", "model": {"nl_blocks": 1, "block": f"{name}:Gate", "block_args": {"scale": 0.5}}}]
    table = folder / "mine.yaml"
    table.write_text(yaml.safe_dump({"table": "mine", "title": "mine", "baseline": "C2D",
                                     "defaults": {"model": {"depth": 50}}, "rows": rows}))
    nl = folder / "nl.yaml"  # the non-local row at the same placement: built, not run
    nl.write_text(yaml.safe_dump({"table": "nl", "title": "nl", "baseline": "NL",
                                  "defaults": {"model": {"depth": 50}}, "rows": [{"row": "NL", "model": {"nl_blocks": 1}}]}))
    results = tmp_path / "results"

    out = _sweep(table, results, capsys)
    assert "sweep: 2 runs trained" in out
    frame = pd.read_csv(results / "smoke" / "mine.csv")
    mine = frame.set_index("row").loc["Gate"]
    assert mine["status"] == "ok", mine["reason"]
    assert mine["run_id"] not in {c.run_id for c in build_sweep(nl, "smoke").cells}
    for column in ("params", "gflops", "latency_ms", "peak_mem_mb"):
        assert mine[column] > 0, column
    assert mine["params"] > frame.set_index("row").loc["C2D", "params"]
    record = json.loads((results / "smoke" / "runs" / mine["run_id"] / "record.json").read_text())
    assert [b["name"] for b in record["nonlocal_blocks"]] == ["layer3.nonlocal4"]
    rep = report_table(table, results / "smoke" / "mine.csv", tmp_path / "report", "smoke", results / "smoke" / "runs")
    summary = gains([rep]).set_index("row")
    assert list(summary.index) == ["Gate"] and summary.loc["Gate", "blocks"] == 1
    assert summary.loc["Gate", "added_gflops"] > 0

    # The finished cells are reused; then only the edited block's run is trained again (in this process: the
    # spawned workers above already showed that the block travels to them).
    assert "sweep: 0 runs trained" in _sweep(table, results, capsys, workers=1)
    source.write_text(GATE.replace("self.scale * self.W", "(1 + self.scale) * self.W"))  # the researcher edits
    assert "sweep: 1 runs trained" in _sweep(table, results, capsys, workers=1)
    again = pd.read_csv(results / "smoke" / "mine.csv").set_index("row")
    assert again.loc["Gate", "run_id"] != mine["run_id"] and again.loc["C2D", "run_id"] == frame["run_id"][0]


@pytest.mark.integration
def test_the_readme_example_block_runs(tmp_path, monkeypatch, capsys):
    """examples/my_block.py and its table, as README's "Benchmark your own block" runs them (one seed, W&B off)."""
    import pandas as pd

    text = (REPO / "examples" / "my_block.py").read_text()
    cls = text[text.index("class TemporalMean"):]
    assert len(cls.strip().splitlines()) <= 20  # the README's promise: a block in at most 20 lines
    monkeypatch.chdir(REPO)  # the table names the block as examples.my_block:TemporalMean, from the repository
    table = _profile_folder(tmp_path) / "my_block.yaml"
    table.write_text((REPO / "examples" / "my_block.yaml").read_text())
    _sweep(table, tmp_path / "results", capsys)
    frame = pd.read_csv(tmp_path / "results" / "smoke" / "my_block.csv").set_index("row")
    assert list(frame["status"]) == ["ok"] * 3 and frame.loc["TemporalMean 5-block", "gflops"] > frame.loc["C2D", "gflops"]


def test_channels_last_takes_blocks_with_parameters_of_any_rank():
    """Module.to(memory_format=channels_last_3d) refuses a 4-D tensor; a block's (C, 1, 1, 1) scale must not stop
    a channels-last run, and the conv weights still change layout."""
    from nlbench.ops.layout import to_memory_format

    block = nn.Sequential(nn.Conv3d(4, 4, 1))
    block.scale = nn.Parameter(torch.ones(4, 1, 1, 1))
    with pytest.raises(RuntimeError):
        nn.Sequential(nn.Conv3d(4, 4, 1), nn.LayerNorm([4, 1, 1, 1])).to(memory_format=torch.channels_last_3d)
    to_memory_format(block, torch.channels_last_3d)
    assert block[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert block.scale.shape == (4, 1, 1, 1)


def test_the_console_script_finds_a_block_in_the_directory_it_runs_from(tmp_path):
    """`nlbench ...` (the console script, as the W&B agent launches `nlbench agent-run`) starts with its own bin/
    on sys.path, not the working directory: a block named by import path there must still be found."""
    import shutil
    import subprocess
    import sys

    script = shutil.which("nlbench", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the nlbench console script is not installed beside this interpreter")
    (tmp_path / "cwdblock.py").write_text(GATE)
    proc = subprocess.run([script, "block", "--block", "cwdblock:Gate", "--channels", "8", "--shape", "2x4x4",
                           "--counts-only", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert json.loads(proc.stdout)["params"] == 8 * 8 + 8
