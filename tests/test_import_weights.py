import pytest
import torch
from torchvision import models

from gsmc_core.checkpoint import CheckpointError, load_checkpoint
from gsmc_core.cli import main
from gsmc_core.import_weights import import_weights


@pytest.fixture(scope="module")
def torchvision_state():
    torch.manual_seed(3)
    return models.resnet18(weights=None).state_dict()  # 1000-class fc, torchvision key names


def _assert_backbone_equal(ckpt_path, source_state):
    ckpt = load_checkpoint(ckpt_path, kind="init")
    assert ckpt.kind == "init"
    model = ckpt.build_model()
    for key, value in source_state.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(model.state_dict()[f"backbone.{key}"], value), key
    assert not any(k.startswith("fc.") for k in ckpt.state_dict)


def test_torchvision_format(tmp_path, torchvision_state):
    src = tmp_path / "resnet18.pth"
    torch.save(torchvision_state, src)
    out = import_weights(src, "torchvision", tmp_path / "init.pt")
    _assert_backbone_equal(out, torchvision_state)


def test_weights_saved_before_bn_step_counters_import(tmp_path, torchvision_state):
    # torchvision's ImageNet file (2017) has no num_batches_tracked: torch's loader accepts it
    old = {k: v for k, v in torchvision_state.items() if not k.endswith("num_batches_tracked")}
    src = tmp_path / "resnet18-f37072fd.pth"
    torch.save(old, src)
    _assert_backbone_equal(import_weights(src, "torchvision", tmp_path / "init.pt"), old)
    # a missing weight is still refused
    del old["layer1.0.conv1.weight"]
    torch.save(old, src)
    with pytest.raises(CheckpointError, match="1 missing"):
        import_weights(src, "torchvision", tmp_path / "init2.pt")


def test_eac_msceleb_format(tmp_path, torchvision_state):
    src = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": torchvision_state}, src)
    out = import_weights(src, "eac-msceleb", tmp_path / "init.pt")
    _assert_backbone_equal(out, torchvision_state)


def test_gsmc_dmue_format_strips_prefix_and_drops_loss_layer(tmp_path, torchvision_state):
    src = tmp_path / "mv_epoch_17.pt"
    state = {f"feat_net.{k}": v for k, v in torchvision_state.items()}
    state["loss_layer.weight"] = torch.randn(7, 512)
    torch.save({"state_dict": state, "epoch": 17, "batch_id": 100}, src)
    rc = main(["import-weights", str(src), "--format", "gsmc-dmue", "--out",
               str(tmp_path / "init.pt")])
    assert rc == 0
    _assert_backbone_equal(tmp_path / "init.pt", torchvision_state)


def test_wrong_format_gives_clear_errors(tmp_path, torchvision_state):
    src = tmp_path / "plain.pth"
    torch.save(torchvision_state, src)
    with pytest.raises(CheckpointError, match="plain.pth: has no 'state_dict'"):
        import_weights(src, "eac-msceleb", tmp_path / "x.pt")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": torchvision_state}, wrapped)
    with pytest.raises(CheckpointError, match="no keys start with 'feat_net.'"):
        import_weights(wrapped, "gsmc-dmue", tmp_path / "x.pt")
    r34 = tmp_path / "r34.pth"
    torch.save(models.resnet34(weights=None).state_dict(), r34)
    with pytest.raises(CheckpointError, match="r34.pth: keys do not match a resnet18"):
        import_weights(r34, "torchvision", tmp_path / "x.pt")
    r50 = tmp_path / "r50.pth"
    torch.save(models.resnet50(weights=None).state_dict(), r50)
    with pytest.raises(CheckpointError, match="r50.pth"):
        import_weights(r50, "torchvision", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_cli_reports_missing_source(tmp_path, capsys):
    rc = main(["import-weights", str(tmp_path / "none.pth"), "--format", "torchvision",
               "--out", str(tmp_path / "o.pt")])
    assert rc == 2
    assert "none.pth: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["negative variance", "integer weights", "declared 10^12 values",
                                    "NaN"])
def test_a_bad_source_is_refused_by_name_and_the_existing_output_is_kept(tmp_path, torchvision_state,
                                                                         damage):
    good = tmp_path / "good.pth"
    torch.save(torchvision_state, good)
    out = import_weights(good, "torchvision", tmp_path / "init.pt")
    before = out.read_bytes()
    state = dict(torchvision_state)
    if damage == "negative variance":
        state["bn1.running_var"] = state["bn1.running_var"].clone()
        state["bn1.running_var"][0] = -1.0
    elif damage == "integer weights":
        state["conv1.weight"] = state["conv1.weight"].to(torch.int32)
    elif damage == "declared 10^12 values":
        state["conv1.weight"] = torch.zeros(1).expand(1_000_000, 1_000_000)
    else:
        state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"].clone()
        state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="bad.pth"):
        import_weights(bad, "torchvision", out)
    assert out.read_bytes() == before  # the earlier init checkpoint is untouched
    load_checkpoint(out, kind="init")


def test_a_file_that_is_not_weights_is_refused_without_torchs_unsafe_advice(tmp_path):
    src = tmp_path / "bad.pth"
    src.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is not a torch weight file") as refused:
        import_weights(src, "torchvision", tmp_path / "init.pt")
    assert "weights_only" not in str(refused.value)
