"""pretrain.provenance: content fingerprints, the reasons a record differs, moving aside."""
import os

from pretrain import provenance


def test_fingerprint_follows_content_not_bookkeeping(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 1000)
    (tmp_path / "config.json").write_text("{}")
    first = provenance.fingerprint(str(tmp_path))
    for name in ("trainer_state.json", "provenance.json", "README.md", ".hidden", "x.tmp"):
        (tmp_path / name).write_text("anything")
    (tmp_path / "sub").mkdir()
    assert provenance.fingerprint(str(tmp_path)) == first
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 999 + b"\x01")  # same size
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))  # and another mtime: read again
    assert provenance.fingerprint(str(tmp_path)) != first
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 1000)
    os.rename(tmp_path / "config.json", tmp_path / "generation_config.json")
    assert provenance.fingerprint(str(tmp_path)) != first  # names count too


def test_differences_name_what_changed():
    old = dict(stage="csft", input_model="m", input_fingerprint="sha256:aaaa",
               data={"Games": "sha256:1"}, settings={"max_steps": 4, "seed": 1})
    assert provenance.differences(old, old) == []
    new = dict(old, input_fingerprint="sha256:bbbb", data={"Games": "sha256:2"},
               settings={"max_steps": 8, "seed": 1})
    assert provenance.differences(old, new) == ["input model m changed (aaaa -> bbbb)",
                                                "data Games changed", "max_steps 4 -> 8"]
    assert provenance.differences(None, new) == [
        "no provenance.json (made before provenance was recorded)"]


def test_move_aside_keeps_everything(tmp_path):
    feat = tmp_path / "Games.x.feat"
    feat.write_text("rows")
    (tmp_path / "Games.x.feat.json").write_text("meta")
    first = provenance.move_aside(str(feat), companions=(".json",))
    feat.write_text("rows 2")
    second = provenance.move_aside(str(feat), companions=(".json",))
    assert first != second and not feat.exists()
    assert open(first).read() == "rows" and open(first + ".json").read() == "meta"
    assert open(second).read() == "rows 2" and not os.path.exists(second + ".json")
