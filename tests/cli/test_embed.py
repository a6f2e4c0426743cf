"""``oskdft embed MODEL --wav-scp wav.scp --out DIR``: stage 4's embeddings, resumably."""
import numpy as np
import pytest

from oskdft.cli.main import main
from oskdft.embedding.deploy import embed_wav_scp, load_deployment
from oskdft.utils.errors import InputError
from oskdft.utils.kaldi_io import read_scp
from tests.cli.deployed_recipe import FINAL, MODELS, ONNX


@pytest.mark.parametrize("model", MODELS)
def test_embed_writes_stage_4s_embeddings(deployed, tmp_path, model, monkeypatch):
    out = tmp_path / "out"
    assert main(["embed", str(deployed / model), "--wav-scp", str(deployed / "data/test/wav.scp"),
                 "--out", str(out), "--chunk-size", "4"]) == 0
    stage_4 = read_scp(deployed / "exp/sys/embeddings/test/xvector.scp")
    monkeypatch.chdir(tmp_path.parent)  # the index reads the same from anywhere
    table = read_scp(out / "xvector.scp")
    assert list(table) == sorted(stage_4)
    np.testing.assert_allclose(np.stack(list(table.values())),
                               np.stack([stage_4[key] for key in table]), atol=1e-4)
    # 9 utterances in chunks of 4: three tables.
    assert sorted(p.name for p in out.glob("xvector.*.scp")) == [
        "xvector.1.scp", "xvector.2.scp", "xvector.3.scp"]


class CountingEmbedder:
    def __init__(self, embedder):
        self.embedder, self.rows = embedder, 0

    def __call__(self, wav, lengths):
        self.rows += len(wav)
        return self.embedder(wav, lengths)


def test_embed_names_a_corrupt_wav_and_resumes_after_it(deployed, tmp_path):
    entries = (deployed / "data/test/wav.scp").read_text().splitlines()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00 not audio")
    broken = list(entries)
    broken[5] = f"{entries[5].split()[0]} {corrupt}"  # in the second chunk of 4
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("\n".join(broken) + "\n")
    out = tmp_path / "out"
    deployment = load_deployment(deployed / ONNX)

    with pytest.raises(InputError) as error:
        embed_wav_scp(deployment, wav_scp, out, chunk_size=4, progress=False)
    utt = entries[5].split()[0]
    assert str(error.value).startswith(f"{wav_scp}:6: utterance {utt!r}: {corrupt}: audio not "
                                       "readable")
    assert (out / "xvector.1.scp").is_file() and not (out / "xvector.2.scp").exists()
    assert not (out / "xvector.scp").exists()
    first_chunk = (out / "xvector.1.ark").stat().st_mtime_ns

    wav_scp.write_text("\n".join(entries) + "\n")
    deployment.embedder = counter = CountingEmbedder(deployment.embedder)
    embed_wav_scp(deployment, wav_scp, out, chunk_size=4, progress=False)
    assert counter.rows == 9 - 4  # the first chunk was kept
    assert (out / "xvector.1.ark").stat().st_mtime_ns == first_chunk
    assert len(read_scp(out / "xvector.scp")) == 9

    counter.rows = 0
    embed_wav_scp(deployment, wav_scp, out, chunk_size=4, progress=False)
    assert counter.rows == 0  # all done: nothing to embed


def test_embed_refuses_a_directory_filled_by_another_model(deployed, tmp_path, capsys):
    args = ["--wav-scp", str(deployed / "data/valid/wav.scp"), "--out", str(tmp_path / "out")]
    assert main(["embed", str(deployed / ONNX), *args]) == 0
    assert main(["embed", str(deployed / FINAL), *args]) == 1
    err = capsys.readouterr().err
    assert "embed.json" in err and f"holds embeddings of {deployed / ONNX}" in err


def test_embed_names_a_bad_wav_scp_line(deployed, tmp_path, capsys):
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("spk0-a /x.wav\nspk0-b\n")
    assert main(["embed", str(deployed / ONNX), "--wav-scp", str(wav_scp), "--out",
                 str(tmp_path / "out")]) == 1
    assert f"{wav_scp}:2: expected `<utt> <path or command |>`" in capsys.readouterr().err


def test_an_onnx_model_runs_on_the_cpu_only(deployed, tmp_path, capsys):
    assert main(["embed", str(deployed / ONNX), "--wav-scp", str(deployed / "data/test/wav.scp"),
                 "--out", str(tmp_path / "out"), "--device", "cuda"]) == 1
    assert "an ONNX model runs on the CPU, not cuda" in capsys.readouterr().err
