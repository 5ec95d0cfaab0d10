"""Model bundles: bitwise round trip, tamper refusal, registry without torch, the models CLI."""

import json
import os
import subprocess
import sys

import pytest
import torch

from bids_synth.cli import main as cli
from bids_synth.errors import ModelBundleError
from bids_synth.models import registry
from bids_synth.models.bundle import Bundle, save_bundle
from bids_synth.models.card import record_evaluation, render_model_card
from bids_synth.models.registry import find_bundle, install_bundle, list_bundles
from bids_synth.nn.factory import build_network

KWARGS = {"channels": [4, 8], "norm": "instance", "in_channels": 1, "out_channels": 1}


def meta(bundle_id="sct-unet", version="1.0.0"):
    return {
        "id": bundle_id,
        "version": version,
        "task": "sct",
        "architecture": {"name": "unet", "kwargs": KWARGS},
        "input": {
            "suffixes": ["T1w"],
            "channels": 1,
            "spacing_mm": [1, 1, 1],
            "orientation": "RAS",
            "normalization": {"method": "percentile", "low": 0.5, "high": 99.5},
        },
        "output": {
            "suffix": "CT",
            "units": "HU",
            "range": [-1024, 3071],
            "normalization": {"method": "scale", "offset": 0.0, "scale": 1000.0},
        },
        "training": {
            "data": {"kind": "simulated", "description": "test heads"},
            "command": "bids-synth train ...",
        },
        "metrics": [{"name": "MAE", "value": 80.0, "units": "HU", "dataset": "held-out"}],
    }


@pytest.fixture
def network():
    torch.manual_seed(0)
    return build_network("unet", **KWARGS)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BIDS_SYNTH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_bundle_round_trip_is_bitwise(tmp_path, network):
    bundle = save_bundle(tmp_path / "b", network, meta=meta(), card=render_model_card(meta(), []))
    loaded = Bundle.read(tmp_path / "b").load_network()
    original = network.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    assert all(torch.equal(original[k], v) for k, v in loaded.state_dict().items())
    again = save_bundle(tmp_path / "c", loaded, meta=meta())
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()
    assert again.sha256 == bundle.sha256
    assert "Model card: sct-unet 1.0.0" in (tmp_path / "b" / "MODEL_CARD.md").read_text()


def test_tampered_weights_are_refused(tmp_path, network, home):
    save_bundle(tmp_path / "b", network, meta=meta())
    weights = tmp_path / "b" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match="sct-unet@1.0.0: weights sha256 mismatch"):
        Bundle.read(tmp_path / "b").load_network()
    assert cli(["models", "verify", str(tmp_path / "b")]) == 7
    assert cli(["models", "install", str(tmp_path / "b")]) == 7
    assert not (home / "models" / "sct-unet-1.0.0").exists()


def test_a_bundle_replaced_in_its_folder_is_hashed_anew_and_never_run_as_the_old(tmp_path, network):
    """Nipype hashes the bundle's digest: new weights in the same folder run again; a bundle
    changed after the workflow was built is refused rather than run under the old identity."""
    from bids_synth.interfaces.base import read_bundle
    from bids_synth.interfaces.bundle import BundleMRPrediction
    from bids_synth.models.selection import bundle_inputs

    old = bundle_inputs(save_bundle(tmp_path / "b", network, meta=meta()))
    with torch.no_grad():
        next(network.parameters()).add_(1.0)
    new = bundle_inputs(save_bundle(tmp_path / "b", network, meta=meta()))
    assert new["bundle"] == old["bundle"] and new["bundle_digest"] != old["bundle_digest"]
    hashes = [BundleMRPrediction(**i).inputs.get_hashval()[1] for i in (old, new)]
    assert hashes[0] != hashes[1]
    with pytest.raises(ModelBundleError, match="changed on disk"):
        read_bundle(BundleMRPrediction(**old).inputs)


def test_weights_must_fit_the_architecture(tmp_path, network):
    wrong = meta()
    wrong["architecture"] = {"name": "unet", "kwargs": {**KWARGS, "channels": [4, 16]}}
    save_bundle(tmp_path / "b", network, meta=wrong)
    with pytest.raises(ModelBundleError, match="do not fit the architecture"):
        Bundle.read(tmp_path / "b").load_network()


def test_invalid_bundle_json_is_a_clear_error(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({"id": "x"}))
    with pytest.raises(ModelBundleError, match="lacks version"):
        Bundle.read(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({**meta(), "version": "1.0", "weights": {}}))
    with pytest.raises(ModelBundleError, match="invalid version '1.0'"):
        Bundle.read(tmp_path)


def test_install_then_find_by_id_and_version(tmp_path, network, home, capsys):
    for version in ("1.0.0", "1.2.0", "1.10.0-rc.1"):
        install_bundle(save_bundle(tmp_path / version, network, meta=meta(version=version)).path)
    assert find_bundle("sct-unet").version == "1.10.0-rc.1"
    assert find_bundle("sct-unet@1.2.0").path == home / "models" / "sct-unet-1.2.0"
    installed = [b.version for b in list_bundles() if b.id == "sct-unet"]
    assert sorted(installed) == ["1.0.0", "1.10.0-rc.1", "1.2.0"]
    with pytest.raises(ModelBundleError, match="not found .*sct-unet@1.0.0"):
        find_bundle("no-such-model")
    assert cli(["models", "list"]) == 0
    assert "sct-unet@1.2.0" in capsys.readouterr().out
    assert cli(["models", "verify", "--all"]) == 0
    verified = capsys.readouterr().out
    assert all(f"sct-unet@{v}: ok" in verified for v in installed)
    assert verified.count(": ok") == len(list_bundles())  # the shipped bundles too
    assert cli(["models", "show", "sct-unet@1.0.0"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (
        shown["version"] == "1.0.0"
        and shown["weights"]["sha256"] == find_bundle("sct-unet@1.0.0").sha256
    )


def test_install_keeps_every_bundle_file_and_its_digest_but_not_the_training_folder(
    tmp_path, network, home
):
    bundle = save_bundle(tmp_path / "b", network, meta=meta())
    (bundle.path / "nyul_reference.json").write_text("{}")  # a file a task's bundle may carry
    (bundle.path / "training" / "checkpoints").mkdir(parents=True)
    (bundle.path / "training" / "checkpoints" / "latest.json").write_text("{}")
    installed = install_bundle(bundle.path)
    assert (installed.path / "nyul_reference.json").is_file()
    assert not (installed.path / "training").exists()
    assert installed.digest == Bundle.read(bundle.path).digest
    assert cli(["models", "verify", f"{bundle.ref}#{bundle.digest}"]) == 0


def test_registry_lists_bundles_without_importing_torch(tmp_path, network, home):
    install_bundle(save_bundle(tmp_path / "b", network, meta=meta()).path)
    code = (
        "import sys; from bids_synth.models.registry import list_bundles, find_bundle; "
        "b = [x for x in list_bundles() if x.id == 'sct-unet']; find_bundle('sct-unet').verify(); "
        "print(len(b), 'torch' in sys.modules, 'safetensors' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BIDS_SYNTH_HOME": str(home)},
    )
    assert result.stdout.split() == ["1", "False", "False"]


def test_recorded_evaluation_updates_card_not_weights(tmp_path, network):
    bundle = save_bundle(tmp_path / "b", network, meta=meta(), card="old card")
    row = {"name": "MAE", "value": 123.0, "units": "HU", "dataset": "held-out colin27 heads"}
    record_evaluation(bundle.path, [row], limits=["Bone is underestimated."])
    record_evaluation(bundle.path, [dict(row, value=120.0)])  # same metric again: replaced
    again = Bundle.read(bundle.path)
    again.verify()
    assert again.sha256 == bundle.sha256
    assert [m["value"] for m in again.meta["metrics"]] == [80.0, 120.0]
    card = (bundle.path / "MODEL_CARD.md").read_text()
    assert "held-out colin27 heads" in card and "Bone is underestimated." in card


def test_shipped_bundles_verify_fit_the_size_budget_and_state_their_evaluation():
    shipped = list_bundles([registry.SHIPPED])
    assert {"sct", "translate", "denoise"} <= {b.task for b in shipped}
    sizes = []
    for bundle in shipped:
        bundle.verify()
        sizes.append((bundle.path / "model.safetensors").stat().st_size)
        assert sizes[-1] <= 15 * 2**20, bundle.ref
        card = (bundle.path / "MODEL_CARD.md").read_text()
        assert bundle.meta["training"]["data"]["kind"] == "simulated"
        assert "Compute: trained on" in card
        assert "bids-synth train" in card or "python -m bids_synth.training" in card  # retrain
        datasets = " ".join(m.get("dataset", "") for m in bundle.meta["metrics"])
        never_seen = "colin27" in datasets or "anatomies never trained on" in datasets
        assert "held-out" in datasets and never_seen, bundle.ref
    assert sum(sizes) <= 60 * 2**20


def test_every_shipped_bundle_is_pinned_by_the_package():
    from bids_synth.models.pins import shipped_pins

    shipped = list_bundles([registry.SHIPPED])
    assert shipped_pins() == {bundle.ref: bundle.digest for bundle in shipped}


def test_a_substituted_shipped_bundle_is_refused(tmp_path, monkeypatch):
    """A shipped bundle whose files changed (here its model card, beside valid weights) fails."""
    import shutil

    original = find_bundle("denoise-slab", [registry.SHIPPED])
    shipped = tmp_path / "bundles"
    shutil.copytree(original.path, shipped / original.path.name)
    monkeypatch.setattr(registry, "SHIPPED", shipped)
    Bundle.read(shipped / original.path.name).verify()  # an exact copy is what was pinned
    card = shipped / original.path.name / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\nMeasured on better data.\n")
    with pytest.raises(ModelBundleError, match="shipped bundle was modified or substituted"):
        Bundle.read(shipped / original.path.name).verify()


def test_a_user_pin_must_match_the_digest(tmp_path, network, home, capsys):
    bundle = install_bundle(save_bundle(tmp_path / "b", network, meta=meta()).path)
    assert find_bundle(f"sct-unet@1.0.0#{bundle.digest}").path == bundle.path
    with pytest.raises(ModelBundleError, match="does not match the pin"):
        find_bundle("sct-unet@1.0.0#" + "0" * 64)
    assert cli(["models", "verify"]) == 0  # no argument: every bundle found
    assert capsys.readouterr().out.count(": ok (digest ") == len(list_bundles())
