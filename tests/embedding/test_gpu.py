import numpy as np
import pytest
import torch

from oskdft.embedding.extract import extract_embeddings_job
from oskdft.model_dir import save_final
from oskdft.models.speed import median_times
from oskdft.utils.kaldi_io import read_scp
from tests.embedding.tiny_system import scratch_config, tiny_model, write_set

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_a_stage_4_job_on_the_gpu_matches_the_cpu(tmp_path):
    write_set(tmp_path, "test", [0.7, 1.9, 3.2, 1.1, 2.4])
    cfg = scratch_config(eval={"crop_seconds": 1.0, "num_crops": 3, "batch_seconds": 4.0})
    save_final(tmp_path / "final", tiny_model(cfg), cfg, {})
    for device in ("cpu", "auto"):
        assert extract_embeddings_job(
            tmp_path / "final",
            tmp_path / "data",
            tmp_path / device,
            ["test"],
            job=1,
            num_jobs=1,
            device=device,
            progress=False,
        ) == ["test"]
    for table in ("xvector", "xvector_crops"):
        on_cpu = read_scp(tmp_path / "cpu" / "test" / f"{table}.1.scp")
        on_gpu = read_scp(tmp_path / "auto" / "test" / f"{table}.1.scp")
        assert on_gpu.keys() == on_cpu.keys()
        for key in on_cpu:
            np.testing.assert_allclose(on_gpu[key], on_cpu[key], atol=1e-3)


def test_gpu_timing_waits_for_the_kernels():
    matrix = torch.randn(8192, 8192, device="cuda")
    # One fp32 8192^3 product is several milliseconds on any GPU; its launch alone is ~10 us.
    [seconds] = median_times([lambda wav: matrix @ matrix], seconds=0.1, repeats=3, device="cuda")
    assert seconds > 1e-3
