"""The three learning-rate schedules and the loss weights against values worked out by hand
from method.md's rules (paper settings: E = 100, back end 1e-4 -> 1e-6, adapters x10, SSL
5e-5 with a 9-epoch warm-up then x0.93 per epoch, KD weight (E - e) / E)."""
import pytest

from oskdft.config import OptimConfig, SystemConfig
from oskdft.training.schedules import learning_rates, loss_weights

# epoch (1-based): back end = 1e-6 + 99e-6 * (1 + cos(pi (e - 1) / 99)) / 2,
# ssl = 5e-5 * e / 9 up to e = 9, then 5e-5 * 0.93 ** (e - 9); KD weight = (100 - e) / 100.
PAPER = {
    1: (1.0e-4, 5.555556e-6, 0.99),
    9: (9.841346e-5, 5.0e-5, 0.91),
    10: (9.799490e-5, 4.65e-5, 0.90),  # 0.93 ** 1
    20: (9.127199e-5, 2.250518e-5, 0.80),  # 0.93 ** 11 = 0.450104
    50: (5.128537e-5, 2.551355e-6, 0.50),  # cos(49 pi / 99) = sin(pi / 198)
    100: (1.0e-6, 6.775141e-8, 0.0),  # 0.93 ** 91 = 1.35503e-3
}


@pytest.mark.parametrize("epoch", sorted(PAPER))
def test_paper_schedules(epoch):
    backend, ssl, kd = PAPER[epoch]
    rates = learning_rates(OptimConfig(), epoch - 1)
    assert rates["backend"] == pytest.approx(backend, rel=1e-6)
    assert rates["adapters"] == pytest.approx(10 * backend, rel=1e-6)
    assert rates["ssl"] == pytest.approx(ssl, rel=1e-6)
    weights = loss_weights(SystemConfig(), epoch - 1)
    assert weights.kd == pytest.approx(kd, abs=1e-12)
    assert weights.sv == 1.0


def test_ssl_rate_without_warmup_starts_at_its_peak():
    cfg = OptimConfig(ssl_lr=1e-3, ssl_warmup_epochs=0, ssl_decay=0.5)
    assert [learning_rates(cfg, e)["ssl"] for e in range(3)] == [1e-3, 5e-4, 2.5e-4]


def test_single_epoch_runs_at_the_initial_back_end_rate():
    assert learning_rates(OptimConfig(epochs=1), 0)["backend"] == 1e-4


def test_two_step_baseline_distils_then_fine_tunes():
    cfg = SystemConfig()
    cfg.optim.epochs = 5
    cfg.kd.schedule, cfg.kd.until_epoch, cfg.sv.from_epoch = "constant", 2, 2
    phases = [(w.uses_kd, w.uses_sv) for w in (loss_weights(cfg, e) for e in range(5))]
    assert phases == [(True, False)] * 2 + [(False, True)] * 3


def test_no_kd_loss_means_zero_kd_weight():
    cfg = SystemConfig()
    cfg.kd.loss = "none"
    assert loss_weights(cfg, 0).kd == 0.0
