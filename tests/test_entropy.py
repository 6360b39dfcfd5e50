"""The tabulated densities (the factorized prior of Ballé et al. 2018, appendix 6.1, and the Gaussian scale
mixture of Theis et al. 2017) and their real entropy coding."""
from __future__ import annotations

import copy
import io
import math
from typing import Callable

import numpy as np
import pytest
import torch

from neuralcodecs.entropy import FactorizedPrior, GaussianScaleMixture, TabulatedDensity
from neuralcodecs.entropy.coder import pmf_from_counts
from neuralcodecs.entropy.tabulated import PRECISION, channel_bits, channel_symbols, symbol_bits

torch.set_num_threads(1)

SCALES = torch.tensor([0.7, 1.5, 3.0, 6.0])
LOCS = torch.tensor([0.0, 0.5, -2.3, 4.0])
C = len(SCALES)
# a zero-mean two-scale GSM per channel: the narrow scale SCALES[c] with weight 0.7, four times it with 0.3
MIX_SCALES = SCALES[:, None] * torch.tensor([1.0, 4.0])
MIX_WEIGHTS = torch.tensor([0.7, 0.3])
DENSITIES = pytest.mark.parametrize("density", [FactorizedPrior, GaussianScaleMixture], ids=lambda d: d.__name__)


def laplace(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, C, h, w, generator=g) - 0.5
    # inverse CDF of the Laplace distribution, per channel
    return LOCS.view(1, C, 1, 1) - SCALES.view(1, C, 1, 1) * torch.sign(u) * torch.log1p(-2 * u.abs())


def gaussian_mixture(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    wide = torch.rand(n, C, h, w, generator=g) < MIX_WEIGHTS[1]
    scale = torch.where(wide, MIX_SCALES[:, 1].view(1, C, 1, 1), MIX_SCALES[:, 0].view(1, C, 1, 1))
    return scale * torch.randn(n, C, h, w, generator=g)


def discretized_laplace_entropy(scale: float, shift: float) -> float:
    """Entropy in bits of a Laplace(shift, scale) variable quantized to the integers."""
    k = torch.arange(-2000, 2001, dtype=torch.float64)
    d = torch.distributions.Laplace(torch.tensor(shift, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
    p = d.cdf(k + 0.5) - d.cdf(k - 0.5)
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


def discretized_gsm_entropy(scales: torch.Tensor, weights: torch.Tensor) -> float:
    """Entropy in bits of a zero-mean GSM variable quantized to the integers."""
    k = torch.arange(-2000, 2001, dtype=torch.float64)[:, None]
    normal = torch.distributions.Normal(0.0, scales.double())
    p = (weights.double() * (normal.cdf(k + 0.5) - normal.cdf(k - 0.5))).sum(dim=1)
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


@pytest.fixture(scope="module")
def factorized() -> FactorizedPrior:
    torch.manual_seed(0)
    model = FactorizedPrior(C)
    # The quantiles get a large learning rate: they must travel from +-init_scale to the 1e-9 tails
    # within this short run.
    density = [p for name, p in model.named_parameters() if name != "quantiles"]
    opt = torch.optim.Adam([{"params": density, "lr": 1e-2}, {"params": [model.quantiles], "lr": 0.5}])
    for step in range(300):
        y = laplace(8, 16, 16, seed=step)
        _, bits = model(y)
        loss = bits.sum() / y.numel() + model.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.update_tables()  # what the training loop does when it ends
    return model.eval()


@pytest.fixture(scope="module")
def gsm() -> GaussianScaleMixture:
    torch.manual_seed(0)
    model = GaussianScaleMixture(C)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(200):
        _, bits = model(gaussian_mixture(8, 16, 16, seed=step))
        loss = bits.sum() / bits.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.update_tables()
    return model.eval()


@pytest.fixture(params=["factorized", "gsm"])
def trained(request) -> tuple[TabulatedDensity, Callable[..., torch.Tensor]]:
    """A trained density and the sampler of the latents it was trained on."""
    sample = {"factorized": laplace, "gsm": gaussian_mixture}[request.param]
    return request.getfixturevalue(request.param), sample


def test_learns_the_entropy_of_a_discretized_laplace(factorized):
    y = laplace(32, 16, 16, seed=1000)
    with torch.no_grad():
        _, bits = factorized(y)
    bits = bits.mean(dim=(0, 2, 3))
    for c in range(C):
        # entropy of the Laplace quantized on the grid the density chose (integers + its median)
        shift = float(LOCS[c] - factorized.medians[c])
        h = discretized_laplace_entropy(float(SCALES[c]), shift)
        assert abs(float(bits[c]) - h) < 0.03 * h, (c, float(bits[c]), h)
        assert abs(float(factorized.medians[c] - LOCS[c])) < 0.4


def test_gsm_learns_the_entropy_of_a_discretized_gsm(gsm):
    with torch.no_grad():
        _, bits = gsm(gaussian_mixture(32, 16, 16, seed=1000))
    bits = bits.mean(dim=(0, 2, 3))
    for c in range(C):
        h = discretized_gsm_entropy(MIX_SCALES[c], MIX_WEIGHTS)
        assert abs(float(bits[c]) - h) < 0.03 * h, (c, float(bits[c]), h)
    assert (gsm.table_medians == 0).all()  # symmetric about 0


def test_gsm_table_range_leaves_at_most_the_tail_mass_outside(gsm):
    q = gsm._quantiles()
    assert (q[:, 1] == 0).all() and torch.equal(q[:, 0], -q[:, 2])
    tails = gsm._tail_mass(q[:, 0], q[:, 2])
    assert (tails > 0).all() and (tails <= gsm.tail_mass).all()


@DENSITIES
def test_training_mode_adds_uniform_noise(density):
    model = density(2)
    y = torch.randn(2, 2, 8, 8) * 3
    y_tilde, bits = model.train()(y)
    assert y_tilde.dtype == torch.float32 and bits.shape == y.shape
    assert (y_tilde - y).abs().max() <= 0.5 and (y_tilde - y).std() > 0.1
    assert (bits >= 0).all() and (bits <= -math.log2(1e-9) + 1e-3).all()


def test_gradients_reach_density_and_quantiles_separately():
    model = FactorizedPrior(2)
    _, bits = model(torch.randn(1, 2, 4, 4))
    bits.sum().backward()
    assert model.quantiles.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.matrices)
    model.zero_grad()
    model.aux_loss().backward()
    assert model.quantiles.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.matrices)


def test_gsm_trains_without_auxiliary_loss():
    model = GaussianScaleMixture(2)
    _, bits = model(torch.randn(1, 2, 4, 4) * 3)
    bits.sum().backward()
    assert model.log_scales.grad.abs().sum() > 0 and model.logits.grad.abs().sum() > 0
    assert model.aux_parameters() == [] and float(model.aux_loss()) == 0


def test_tables_are_integer_buffers(trained):
    prior, _ = trained
    sizes = prior.table_sizes.tolist()
    assert prior.table_counts.shape == (sum(sizes),)  # back to back, no padding
    for counts in torch.split(prior.table_counts, sizes):
        assert counts.dtype == torch.int32 and (counts >= 1).all()
        assert abs(int(counts.sum()) - 2 ** PRECISION) < 0.01 * 2 ** PRECISION
    assert {"table_counts", "table_offsets", "table_sizes", "table_medians"} <= set(prior.state_dict())


def test_tables_of_the_earlier_padded_layout_still_load(trained):
    """Weights written when tables were (channels x widest) arrays load into the back-to-back layout."""
    prior, sample = trained
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    sizes = state["table_sizes"].tolist()
    padded = torch.zeros(len(sizes), max(sizes), dtype=torch.int32)
    for c, counts in enumerate(torch.split(state["table_counts"], sizes)):
        padded[c, :len(counts)] = counts
    other = copy.deepcopy(prior)
    other.load_state_dict({**state, "table_counts": padded})
    assert torch.equal(other.table_counts, prior.table_counts)
    y = torch.round(sample(1, 16, 16, seed=3))
    assert other.compress(y) == prior.compress(y)


def test_real_bytes_match_estimates(trained):
    prior, sample = trained
    y = torch.round(sample(1, 64, 64, seed=7))
    data = prior.compress(y)
    estimate = prior.estimate_bits(y)
    with torch.no_grad():
        _, bits = prior(y)
    model_bits = float(bits.sum())
    assert abs(8 * len(data) - estimate) <= 0.01 * estimate + 64, (8 * len(data), estimate)
    assert abs(8 * len(data) - model_bits) <= 0.01 * model_bits + 64, (8 * len(data), model_bits)


def test_round_trip_is_exact_and_matches_eval_forward(trained):
    prior, sample = trained
    y = sample(2, 16, 24, seed=3)
    data = prior.compress(y)
    y_hat = prior.decompress(data, y.shape)
    assert y_hat.shape == y.shape and y_hat.dtype == torch.float32
    assert torch.equal(y_hat, prior(y)[0])
    assert (y_hat - y).abs().max() <= 0.5
    assert prior.compress(y_hat) == data  # y_hat is a fixed point of quantization


def test_far_out_values_round_trip_through_the_escape(trained):
    prior, sample = trained
    y = torch.round(sample(1, 8, 8, seed=4))
    far = [1000.0, -5000.0, 123456.0, -(2.0 ** 40), 2.0 ** 60, 300.0]
    y.view(-1)[[0, 5, 17, 100, 200, 255]] = torch.tensor(far)
    data = prior.compress(y)
    y_hat = prior.decompress(data, y.shape)
    assert torch.equal(y_hat, prior(y)[0])
    assert torch.equal(torch.round(y_hat - prior.medians.view(1, -1, 1, 1)),
                       torch.round(y - prior.medians.view(1, -1, 1, 1)))
    assert abs(8 * len(data) - prior.estimate_bits(y)) <= 0.01 * prior.estimate_bits(y) + 64


def test_channel_bits_are_symbol_bits_per_channel_and_follow_new_tables(trained):
    """The cached lookup (channel_costs) gives exactly what symbol_bits gives channel by channel, escapes
    included, and is rebuilt when the tables change (update_tables, load_state_dict)."""
    prior, sample = trained
    y = torch.round(sample(1, 16, 16, seed=8))
    y.view(-1)[[3, 77, 500]] = torch.tensor([900.0, -(2.0 ** 33), 250.0])
    counts, offsets, _, medians = prior.tables()
    s = channel_symbols(y, medians)
    want = [symbol_bits(s[c], int(offsets[c]), pmf_from_counts(counts[c])).sum() for c in range(len(s))]
    assert channel_bits(s, prior.costs(), offsets).tolist() == want
    assert prior.estimate_bits(y) == float(np.sum(want))
    other = copy.deepcopy(prior)
    before = other.costs()
    state = other.state_dict()
    other.load_state_dict({**state, "table_counts": state["table_counts"] + 1000})
    assert other.costs() is not before and other.estimate_bits(y) != prior.estimate_bits(y)
    other.update_tables()
    assert other.estimate_bits(y) == prior.estimate_bits(y)


def test_deterministic(trained):
    prior, sample = trained
    y = sample(1, 32, 32, seed=5)
    assert prior.compress(y) == prior.compress(y.clone())


def test_state_dict_round_trip_gives_identical_bytes(trained):
    prior, sample = trained
    y = sample(1, 32, 32, seed=6)
    buffer = io.BytesIO()
    torch.save(prior.state_dict(), buffer)
    fresh = type(prior)(C)
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    fresh.eval()
    for name in ("table_counts", "table_offsets", "table_sizes", "table_medians"):
        assert torch.equal(getattr(fresh, name), getattr(prior, name))
    data = prior.compress(y)
    assert fresh.compress(y) == data
    assert torch.equal(fresh.decompress(data, y.shape), prior.decompress(data, y.shape))


def test_tables_are_built_when_weights_without_tables_load(trained):
    prior, _ = trained
    untabled = type(prior)(C)
    untabled.load_state_dict({k: v for k, v in prior.state_dict().items() if not k.startswith("table_")})
    assert (untabled.table_sizes > 0).all()
    assert torch.equal(untabled.table_counts, prior.table_counts)


@DENSITIES
def test_compress_builds_missing_tables_and_round_trips(density):
    model = density(3).eval()
    y = torch.randn(1, 3, 8, 8) * 4
    data = model.compress(y)
    assert (model.table_sizes > 0).all()
    assert torch.equal(model.decompress(data, y.shape), model(y)[0])


@pytest.mark.parametrize("density, far", [(FactorizedPrior, 400.0), (GaussianScaleMixture, 100.0)],
                         ids=["FactorizedPrior", "GaussianScaleMixture"])
def test_tail_likelihoods_do_not_cancel(density, far):
    model = density(1).double()
    v = torch.tensor([[[-far, far]]], dtype=torch.float64)
    mass = model.bin_mass(v)
    # far in either tail c(v + 1/2) - c(v - 1/2) is tiny but positive, not 0 (or 1 - 1)
    assert (mass > 0).all() and (mass < 1e-10).all()


def test_eval_under_autocast_is_float32(trained):
    prior, sample = trained
    y = sample(1, 8, 8, seed=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_hat, bits = prior(y.bfloat16())
    assert y_hat.dtype == torch.float32 and bits.dtype == torch.float32


def test_rejects_bad_input(trained):
    prior, _ = trained
    with pytest.raises(ValueError):
        prior.compress(torch.zeros(1, C + 1, 4, 4))
    with pytest.raises(ValueError):
        prior.compress(torch.full((1, C, 2, 2), math.inf))
    with pytest.raises(ValueError):
        prior.decompress(b"", (1, C + 1, 4, 4))


def test_pmf_from_stored_counts_is_normalized(trained):
    prior, _ = trained
    p = pmf_from_counts(prior.table_counts[:prior.table_sizes[0]].numpy())
    assert np.isclose(p.sum(), 1.0) and (p > 0).all()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-pmf", "pmf-per-symbol"])
def test_range_coder_reaches_the_information_bound(shared):
    """The coder's real bytes: at most a few words over -sum log2 p(symbol), never under it (by more than the
    quantization of the probabilities), and decoded back exactly."""
    from neuralcodecs.entropy.coder import Decoder, Encoder, information_bits

    rng = np.random.default_rng(0)
    n, k = 20000, 12
    if shared:
        pmf = rng.dirichlet(np.full(k, 0.5))
        symbols = rng.choice(k, n, p=pmf)
    else:
        pmf = rng.dirichlet(np.full(k, 0.5), size=n)
        symbols = np.array([rng.choice(k, p=row) for row in pmf])
    enc = Encoder()
    enc.categorical(symbols, pmf)
    data = enc.to_bytes()
    bound = information_bits(symbols, pmf)
    assert bound - 0.002 * n <= 8 * len(data) <= bound + 0.002 * n + 64
    assert np.array_equal(Decoder(data).categorical(n, pmf), symbols)


def test_scale_indexes_out_of_the_table_are_refused():
    """GaussianConditional groups the scale indexes as bytes after checking their range: -1, LEVELS and 256
    (which a byte would wrap to 0) are refused."""
    from neuralcodecs.entropy.conditional import LEVELS, GaussianConditional

    g = GaussianConditional()
    y = torch.zeros(1, 1, 2, 2)
    for bad in (-1, LEVELS, 256):
        index = torch.full((1, 1, 2, 2), 3, dtype=torch.int64)
        index[0, 0, 1, 1] = bad
        with pytest.raises(ValueError, match="scale indexes"):
            g.compress(y, index)
