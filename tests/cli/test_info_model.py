"""``oskdft info MODEL``: what a trained or exported model is and the results it scored."""

import json

import pytest

from oskdft.cli.main import main
from tests.cli.deployed_recipe import MODELS, ONNX


def info(capsys, path):
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("model", MODELS)
def test_info_describes_the_system_and_its_results(deployed, capsys, model):
    out = info(capsys, deployed / model)
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    final_meta = json.loads((deployed / "exp/sys/final/meta.json").read_text())
    params, macs = final_meta["params"], final_meta["macs_per_second"]
    assert lines["system"] == "system       sys"
    assert f"total {params['total']:,}" in lines["parameters"]
    assert lines["compute"] == (
        f"compute      ssl {macs['ssl']:,}, total {macs['total']:,} MACs per second of audio"
    )
    assert "ssl.source=scratch" in lines["training"] and "ssl.num_layers=2" in lines["training"]
    metrics = json.loads((deployed / "exp/sys/scores/metrics.json").read_text())
    for backend, result in metrics["trial_lists"]["test"]["results"].items():
        marker = "*" if backend == "cosine_mean" else ""
        row = [
            line.split()
            for line in out.splitlines()
            if line.startswith("test ") and line.split()[1] == backend + marker
        ]
        assert len(row) == 1, out
        assert row[0][2:] == [
            f"{100 * result['eer']:.2f}",
            f"{result['min_dcf_0.01']:.3f}",
            f"{result['cllr']:.3f}",
            f"{result['min_cllr']:.3f}",
        ]
    calibration = json.loads((deployed / "exp/sys/scores/calibration.json").read_text())
    eer_threshold = calibration["backends"]["cosine_mean"]["thresholds"]["eer"]
    assert "back end cosine_mean" in lines["deployment"]
    assert f"eer {eer_threshold:.3f}" in lines["deployment"]


def test_info_of_an_export_shows_its_parity(deployed, capsys):
    out = info(capsys, deployed / ONNX)
    meta = json.loads((deployed / "exp/sys/export/meta.json").read_text())
    parity_line = next(line for line in out.splitlines() if line.startswith("parity"))
    assert f"onnx min cosine {meta['parity']['onnx']['min_cosine']:.6f}" in parity_line
    assert "4 utterances" in parity_line
    assert "(ONNX export)" in out.splitlines()[0]


def test_info_of_a_missing_model_says_what_to_give(tmp_path, capsys):
    assert main(["info", str(tmp_path / "final")]) == 1
    assert "no such file or directory (give a trained system's" in capsys.readouterr().err
