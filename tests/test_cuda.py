"""Every stage on a GPU: training, attacks, maps, metrics, controls and the report, with
``device="cuda"``. Skipped where no GPU is present (CI); run on the device machine."""

import numpy as np
import pytest
import torch

import rvi

from test_benchmark import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_benchmark_runs_end_to_end_on_cuda_and_agrees_with_cpu(tmp_path):
    gpu = rvi.run_benchmark(tiny_config(tmp_path / "gpu", device="cuda"))
    cpu = rvi.run_benchmark(tiny_config(tmp_path / "cpu"))
    assert gpu.records.groupby(["model", "input"]).size().eq(48).all()
    scores = gpu.records.filter(like="guided_backprop/cosine/clean").to_numpy(dtype=float)
    assert np.isfinite(scores[~np.isnan(scores)]).all() and (~np.isnan(scores)).any()
    assert "cuda" in gpu.to_markdown()
    # float sums run in another order on the GPU; the models and their accuracy stay close
    clean = [frame.query("attack == 'clean'").set_index("model")["accuracy"]
             for frame in (gpu.accuracy, cpu.accuracy)]
    assert clean[0].to_dict() == pytest.approx(clean[1].to_dict(), abs=0.15)
    assert set(gpu.records.columns) == set(cpu.records.columns)
