"""``oskdft embed MODEL --wav-scp wav.scp --out DIR``: stage 4's embeddings, resumably."""

import numpy as np
import pytest
import soundfile as sf

from oskdft.cli.main import main
from oskdft.inference.deploy import embed_wav_scp, load_deployment
from oskdft.utils.errors import InputError
from oskdft.utils.kaldi_io import read_scp
from tests.cli.deployed_recipe import FINAL, MODELS, ONNX


@pytest.mark.parametrize("model", MODELS)
def test_embed_writes_stage_4s_embeddings(deployed, tmp_path, model, monkeypatch):
    out = tmp_path / "out"
    assert (
        main(
            [
                "embed",
                str(deployed / model),
                "--wav-scp",
                str(deployed / "data/test/wav.scp"),
                "--out",
                str(out),
                "--chunk-size",
                "4",
            ]
        )
        == 0
    )
    stage_4 = read_scp(deployed / "exp/sys/embeddings/test/xvector.scp")
    monkeypatch.chdir(tmp_path.parent)  # the index reads the same from anywhere
    table = read_scp(out / "xvector.scp")
    assert list(table) == sorted(stage_4)
    np.testing.assert_allclose(
        np.stack(list(table.values())), np.stack([stage_4[key] for key in table]), atol=1e-4
    )
    # 9 utterances in chunks of 4: three tables.
    assert sorted(p.name for p in out.glob("xvector.*.scp")) == [
        "xvector.1.scp",
        "xvector.2.scp",
        "xvector.3.scp",
    ]


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
    assert str(error.value).startswith(
        f"{wav_scp}:6: utterance {utt!r}: {corrupt}: audio not readable"
    )
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
    assert (
        main(
            [
                "embed",
                str(deployed / ONNX),
                "--wav-scp",
                str(wav_scp),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    assert f"{wav_scp}:2: expected `<utt> <path or command |>`" in capsys.readouterr().err


def test_an_onnx_model_runs_on_the_cpu_only(deployed, tmp_path, capsys):
    assert (
        main(
            [
                "embed",
                str(deployed / ONNX),
                "--wav-scp",
                str(deployed / "data/test/wav.scp"),
                "--out",
                str(tmp_path / "out"),
                "--device",
                "cuda",
            ]
        )
        == 1
    )
    assert "an ONNX model runs on the CPU, not cuda" in capsys.readouterr().err


def _broken_wav_scp(deployed, tmp_path):
    """The test set's wav.scp with lines 2 (a missing file), 6 (8 samples) and 7 (not audio)
    broken; returns it and those lines' utterances."""
    entries = (deployed / "data/test/wav.scp").read_text().splitlines()
    short = tmp_path / "short.wav"
    sf.write(short, np.full(8, 0.1, np.float32), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00 not audio")
    for line, path in ((2, tmp_path / "missing.wav"), (6, short), (7, corrupt)):
        entries[line - 1] = f"{entries[line - 1].split()[0]} {path}"
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("\n".join(entries) + "\n")
    return wav_scp, [entries[line - 1].split()[0] for line in (2, 6, 7)]


def test_embed_names_every_bad_entry_and_stops(deployed, tmp_path, caplog):
    wav_scp, bad = _broken_wav_scp(deployed, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InputError) as error:
        embed_wav_scp(load_deployment(deployed / ONNX), wav_scp, out, chunk_size=4, progress=False)
    assert str(error.value).startswith(f"{wav_scp}:2: utterance {bad[0]!r}: ")
    assert "audio file not found" in str(error.value) and "2 more bad entries" in str(error.value)
    for line, utt, reason in (
        (2, bad[0], "not found"),
        (6, bad[1], "0.5 ms long"),
        (7, bad[2], "not readable"),
    ):
        assert f"{wav_scp}:{line}: utterance {utt!r}:" in caplog.text and reason in caplog.text
    # Fail-fast: nothing after the first bad entry's chunk is embedded.
    assert not (out / "xvector.1.scp").exists() and not (out / "xvector.scp").exists()


@pytest.mark.parametrize("model", MODELS)
def test_skip_bad_embeds_the_others_and_lists_the_skipped(deployed, tmp_path, model):
    wav_scp, bad = _broken_wav_scp(deployed, tmp_path)
    out = tmp_path / "out"
    assert (
        main(
            [
                "embed",
                str(deployed / model),
                "--wav-scp",
                str(wav_scp),
                "--out",
                str(out),
                "--chunk-size",
                "4",
                "--skip-bad",
            ]
        )
        == 0
    )
    table = read_scp(out / "xvector.scp")
    stage_4 = read_scp(deployed / "exp/sys/embeddings/test/xvector.scp")
    assert sorted(table) == sorted(set(stage_4) - set(bad))
    for key, vector in table.items():
        np.testing.assert_allclose(vector, stage_4[key], atol=1e-4)
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert [line.split()[0] for line in skipped] == bad
    assert skipped[1].startswith(f"{bad[1]} {wav_scp}:6: utterance {bad[1]!r}: ")

    # A rerun keeps every chunk, skipped entries included; without --skip-bad it fails again.
    deployment = load_deployment(deployed / model)
    deployment.embedder = counter = CountingEmbedder(deployment.embedder)
    embed_wav_scp(deployment, wav_scp, out, chunk_size=4, progress=False, skip_bad=True)
    assert counter.rows == 0 and len(read_scp(out / "xvector.scp")) == 6
    with pytest.raises(InputError, match="2 more bad entries"):
        embed_wav_scp(deployment, wav_scp, out, chunk_size=4, progress=False)
    # Fixed, the entries are embedded and the list of skipped ones is gone.
    wav_scp.write_text((deployed / "data/test/wav.scp").read_text())
    embed_wav_scp(deployment, wav_scp, out, chunk_size=4, progress=False)
    assert sorted(read_scp(out / "xvector.scp")) == sorted(stage_4)
    assert not (out / "skipped.txt").exists() and not list(out.glob("skipped.*.txt"))


def test_embed_warns_of_silent_utterances(deployed, tmp_path, caplog):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(3 * 16000, np.float32), 16000)
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text(f"a-1 {silence}\n" + (deployed / "data/test/wav.scp").read_text())
    embed_wav_scp(load_deployment(deployed / ONNX), wav_scp, tmp_path / "out", progress=False)
    assert f"{wav_scp}:1: utterance 'a-1': {silence} has no signal energy" in caplog.text
    assert caplog.text.count("no signal energy") == 1
