import pytest

from nlbench.io import atomic_file, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "r.csv"
    atomic_write_text(target, "a\n")
    atomic_write_text(target, "b\n")
    assert target.read_text() == "b\n"
    assert [p.name for p in target.parent.iterdir()] == ["r.csv"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.csv"
    atomic_write_text(target, "old\n")

    with pytest.raises(AttributeError):
        atomic_write_text(target, 42)  # not text: fails before a byte is written
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half a fi")
        raise RuntimeError("the writer fails mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_broken_yaml_file_is_one_line_naming_the_file_and_line_wherever_it_is_read(tmp_path):
    from nlbench.sweep.spec import load_profiles, load_table
    from nlbench.training.config import ConfigError, RunConfig

    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  depth: 50\n  width: [small\n")
    messages = []
    for read in (RunConfig.load, load_table, load_profiles):
        with pytest.raises(ConfigError) as info:
            read(path)
        messages.append(str(info.value))
    assert messages[0].startswith(f"{path}: line 4 is not valid YAML (") and "\n" not in messages[0]
    assert messages == [messages[0]] * 3
