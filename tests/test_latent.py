"""The conditionals, the integer network and the latent codecs (entropy/latent.py): real bytes against
the bits the models return, exact round trips, and bit-exact entropy parameters in other processes."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcodecs.codecs.balle2018 import Balle2018
from neuralcodecs.entropy.conditional import (LEVELS, GaussianConditional, LogisticConditional, _exact_count,
                                              logistic_levels, logistic_tables, scale_of)
from neuralcodecs.entropy.coder import Decoder
from neuralcodecs.entropy.latent import _per_point, checkerboard
from neuralcodecs.nn.integer import ACT_BITS, CLIP, IntegerConv, IntegerNetwork

torch.set_num_threads(1)


def _gaussian_sample(seed: int, n: int = 4096):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, 40, (1, 4, n // 4), generator=g)
    y = torch.randn(index.shape, generator=g) * scale_of(index.float())
    return y, index


CONDITIONALS = [GaussianConditional, LogisticConditional]


def _logistic_sample(seed: int, n: int = 4096):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, 40, (1, 4, n // 4), generator=g)
    u = torch.rand(index.shape, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    y = (torch.log(u / (1 - u)) * (3 ** 0.5 / torch.pi)).float() * scale_of(index.float())
    return y, index


@pytest.mark.parametrize("cls, sample", [(GaussianConditional, _gaussian_sample),
                                         (LogisticConditional, _logistic_sample)])
def test_conditional_bytes_match_the_models_bits(cls, sample):
    """Real bytes against the tables' bits and the training-mode model's bits, on samples of the model itself."""
    gc = cls().eval()
    y, index = sample(0)
    data = gc.compress(y, index)
    with torch.no_grad():
        _, bits = gc(y, index.float())
    table = gc.estimate_bits(y, index)
    assert abs(8 * len(data) - table) <= 0.01 * table + 64
    assert abs(8 * len(data) - float(bits.sum())) <= 0.01 * float(bits.sum()) + 64


@pytest.mark.parametrize("cls", CONDITIONALS)
def test_conditional_round_trip_is_exact_with_means_and_escapes(cls):
    gc = cls().eval()
    y, index = _gaussian_sample(1, 1024)
    means = torch.round(torch.randn(y.shape) * 512) / 256  # on the integer network's grid
    y.view(-1)[[3, 50, 700]] = torch.tensor([1e6, -3e4, 2.0 ** 40])  # far outside every table
    data = gc.compress(y, index, means)
    y_hat = gc.decompress(data, index, means)
    assert torch.equal(y_hat, gc(y, index.float(), means)[0])
    assert torch.equal(torch.round(y_hat - means), torch.round(y - means))


def test_gaussian_tables_travel_with_the_weights():
    assert {"table_counts", "table_half"} <= set(GaussianConditional().state_dict())
    assert GaussianConditional().table_half.shape[0] == LEVELS


def test_logistic_tables_are_exact_and_not_stored():
    """The logistic's tables are built, not stored (a state without them loads), and every count is the one
    40-digit decimal arithmetic gives (a few levels over their whole range): what every machine builds."""
    assert not set(LogisticConditional().state_dict())
    counts, half = logistic_tables()
    assert half.shape[0] == LEVELS and counts.shape == (int((2 * half.long() + 2).sum()),)
    starts = np.concatenate([[0], np.cumsum(2 * half.numpy().astype(np.int64) + 2)])
    levels = logistic_levels()
    for i in (0, 9, 23):
        s, h = levels[i]
        exact = [max(1, _exact_count(s, float(v), h)) for v in range(-h, h + 1)] + [max(1, _exact_count(s, None, h))]
        assert exact == counts[starts[i]:starts[i + 1]].tolist()



def test_logistic_tables_settled_in_decimal_are_the_same_under_any_decimal_context(monkeypatch):
    """The decimal path (every count within _EDGE of a rounding edge; on these levels none is, so here every count
    takes it) gives the fast path's integers, and a caller's decimal context (traps, precision) changes nothing."""
    import decimal

    from neuralcodecs.entropy import conditional

    counts, half = logistic_tables()
    starts = np.concatenate([[0], np.cumsum(2 * half.numpy().astype(np.int64) + 2)])
    levels = logistic_levels()
    monkeypatch.setattr(conditional, "_EDGE", 1.0)
    monkeypatch.setattr(conditional, "logistic_levels", lambda: [levels[i] for i in (0, 5, 17)])
    with decimal.localcontext(decimal.Context(prec=3, traps=[decimal.Inexact, decimal.Rounded])):
        slow, slow_half = conditional.logistic_tables.__wrapped__()
    assert slow_half.tolist() == [int(half[i]) for i in (0, 5, 17)]
    assert slow.tolist() == np.concatenate([counts[starts[i]:starts[i + 1]].numpy() for i in (0, 5, 17)]).tolist()


@pytest.mark.parametrize("name", ["balle2018", "minnen2018"])
def test_decoded_z_lies_on_the_integer_networks_input_grid(name, photo):
    """h_s.exact(z_hat) needs z_hat on the 2^-ACT_BITS grid: the z a shipped codec decodes from a real string
    (integers plus its medians, which are stored on a 2^-MEDIAN_BITS grid) is there at every rate point."""
    import neuralcodecs as nc

    codec = nc.create_codec(name)
    with torch.no_grad():
        y = codec.g_a(torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255)
        for q in (0, len(codec.lmbdas) - 1):
            prior, z = codec.latent_codec.z_priors[q], codec.latent_codec.h_a(y.abs())
            z_hat = prior.decompress(prior.compress(z), tuple(z.shape))
            assert torch.equal(z_hat, prior.quantize(z))
            assert torch.equal(torch.frac(z_hat * 2 ** ACT_BITS), torch.zeros_like(z_hat))


def test_integer_network_exact_matches_its_training_arithmetic():
    torch.manual_seed(0)
    net = IntegerNetwork(IntegerConv(8, 16, 5, 2, transposed=True), torch.nn.ReLU(), IntegerConv(16, 4, 3))
    z = torch.round(torch.randn(1, 8, 6, 5) * 3 * 2 ** ACT_BITS) / 2 ** ACT_BITS
    exact = net.exact(z) / 2 ** ACT_BITS
    with torch.no_grad():
        approx = net(z).double()
    # float32 training arithmetic can land on the other side of a rounding step, rarely
    assert (exact - approx).abs().max() <= 2 ** -ACT_BITS + 1e-6
    assert float((exact != approx).double().mean()) < 0.05
    with pytest.raises(ValueError, match="grid"):
        net.exact(z + 1e-3)


@pytest.mark.parametrize("k, h, w", [(5, 12, 10), (5, 7, 9), (3, 6, 5), (7, 9, 8), (1, 4, 4)])
def test_checkerboard_pass_is_exact_at_the_non_anchors(k, h, w):
    """A context pass computed on the anchors' phases gives exact()'s integers at every non-anchor (any size,
    odd ones too; the bias, rounding and clip included) and 0 at the anchors; other convolutions are refused."""
    torch.manual_seed(k)
    net = IntegerNetwork(IntegerConv(6, 10, k))
    with torch.no_grad():
        net[0].conv.bias.mul_(50)
        net[0].conv.weight.mul_(20)  # with the large inputs below, some outputs reach the clip
    anchors = checkerboard(h, w).bool()
    x = torch.round(torch.randn(2, 6, h, w) * 40000 * 2 ** ACT_BITS) / 2 ** ACT_BITS * anchors
    ref, got = net.exact(x), net.exact_checkerboard(x)
    assert got.shape == ref.shape
    assert torch.equal(got[..., ~anchors[0, 0]], ref[..., ~anchors[0, 0]])
    assert not got[..., anchors[0, 0]].any()
    assert (ref.abs() == CLIP * 2 ** ACT_BITS).any() or k == 1  # the clip is reached (large inputs)
    with pytest.raises(ValueError, match="stride-1"):
        IntegerNetwork(IntegerConv(6, 10, 3, 2)).exact_checkerboard(x)
    with pytest.raises(ValueError, match="odd size"):
        IntegerNetwork(IntegerConv(6, 10, 4)).exact_checkerboard(x)
    with pytest.raises(ValueError, match="one IntegerConv"):
        IntegerNetwork(IntegerConv(6, 6, 3), torch.nn.ReLU(), IntegerConv(6, 6, 3)).exact_checkerboard(x)


_EXACT = """
import sys, torch
from neuralcodecs.nn.integer import IntegerConv, IntegerNetwork
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
net = IntegerNetwork(IntegerConv(64, 64, 5, 2, transposed=True), torch.nn.ReLU(), IntegerConv(64, 96, 3))
z = torch.round(torch.randn(1, 64, 24, 20, generator=torch.Generator().manual_seed(1)) * 2000) / 256
print(torch.sum(net.exact(z) * torch.arange(96).view(1, -1, 1, 1).double()).item())
"""


def test_integer_network_is_exact_across_thread_counts():
    out = {subprocess.run([sys.executable, "-c", _EXACT, str(t)], capture_output=True, text=True, check=True).stdout
           for t in (1, 2)}
    assert len(out) == 1, out


@pytest.fixture(scope="module")
def hyperprior():
    torch.manual_seed(0)
    m = Balle2018.for_training(name="balle2018")
    m.update_tables()
    return m.eval()


def test_hyperprior_bytes_match_estimate_and_round_trip(hyperprior, photo):
    from neuralcodecs.image import pad

    x = pad(photo, 64)
    chunks = hyperprior.encode_chunks(x)
    assert len(chunks) == 1  # [conditional | z | shifts | y]
    estimate = hyperprior.estimate_bits(x)
    assert abs(8 * sum(map(len, chunks)) - estimate) <= 0.01 * estimate + 128
    with torch.no_grad():
        y = hyperprior.latents(x)
        q = hyperprior.config.quality - 1
        y_hat = hyperprior.latent_codec.decompress(chunks, tuple(y.shape), q, hyperprior.log_gain[[q]])
    assert torch.equal(y_hat, torch.round(y))
    assert hyperprior.decode_chunks(chunks, x.shape).shape == x.shape


def test_hyperprior_training_path(hyperprior):
    hyperprior.train()
    try:
        out = hyperprior(torch.rand(2, 3, 64, 64))
        assert out["bits"].shape == (2,) and bool((out["bits"] > 0).all())
        out["bits"].sum().backward()
        assert hyperprior.latent_codec.h_s[0].conv.weight.grad is not None  # straight through the rounding
    finally:
        hyperprior.eval()
        hyperprior.zero_grad(set_to_none=True)


def test_eval_forward_is_what_decoding_gives_and_coding_keeps_training_mode(hyperprior, photo):
    """In eval mode the latent codec's forward returns the y_hat and z_hat decoding gives (rounded around the
    stored medians); coding a model left in training mode does not switch any of it to eval mode."""
    from neuralcodecs.image import pad

    x = pad(photo, 64)
    q = hyperprior.config.quality - 1
    with torch.no_grad():
        y = hyperprior.latents(x)
        lc = hyperprior.latent_codec
        z = lc.h_a(lc._hyper_input(y, hyperprior.log_gain[[q]]))
        decoded = lc._read_head(Decoder(lc.compress(y, q, hyperprior.log_gain[[q]])[0]), tuple(y.shape), q)[1]
        assert torch.equal(lc.z_priors[q](z)[0], decoded)
        assert torch.equal(_per_point(lc.z_priors, z, torch.tensor([q]))[0], decoded)
    hyperprior.train()
    try:
        with torch.no_grad():
            hyperprior.encode_chunks(x)
        assert all(m.training for m in hyperprior.modules())
    finally:
        hyperprior.eval()


def test_hyperprior_scales_follow_the_rate_points_gain(hyperprior):
    """A gain g multiplies y's scale by g: the same gain-free latent at two rate points gets the same z, and
    scale indexes that differ by the points' shift log(g2 / g1) / LOG_STEP (exact mode and training agree)."""
    from neuralcodecs.entropy.conditional import LOG_STEP

    lc = hyperprior.latent_codec
    torch.manual_seed(3)
    y0 = torch.randn(1, hyperprior.log_gain.shape[1], 8, 8) * 0.3
    with torch.no_grad():
        log_gain = torch.zeros(2, y0.shape[1])
        log_gain[0], log_gain[1] = 0.5, 0.5 + 10 * LOG_STEP  # the second point: ten table steps finer
        z = [lc._z_hat(y0 * log_gain[[i]].exp()[:, :, None, None], i, log_gain[[i]])[1] for i in (0, 1)]
        assert torch.allclose(z[0], z[1])
        index = [lc._to_index(lc._index_grid(z[0], log_gain[[i]])) for i in (0, 1)]
        inside = (index[0] > 0) & (index[1] < LEVELS - 1)
        assert bool(inside.any()) and bool((index[1] - index[0])[inside].eq(10).all())
        trained = lc._shift(log_gain)[:, :, 0, 0] * 2 ** ACT_BITS
        assert float((trained - lc._shift(log_gain, exact=True)[:, :, 0, 0].float()).abs().max()) <= 1



def test_checkerboard_means_follow_the_rate_points_gain():
    """Means scale with the gain: the same gain-free latent at two rate points gets means that differ by the
    ratio of the gains, and coding (integer gains from update_tables) agrees with training's real path, for
    the anchors and for the rest (whose context reads the decoded anchors / g)."""
    from neuralcodecs.codecs.minnen2018 import Minnen2018

    torch.manual_seed(5)
    m = Minnen2018.for_training(name="minnen2018")
    lc = m.latent_codec
    with torch.no_grad():
        lc.e[-1].conv.bias[: lc.gain_grid.shape[1]].uniform_(-2, 2)  # nonzero gain-free means
        m.update_tables()
        m.eval()
        y0 = torch.randn(1, lc.gain_grid.shape[1], 4, 4)
        free = {"a": [], "n": []}
        for q in (1, 8):
            lg = m.log_gain[[q]]
            g = lg.exp()[:, :, None, None].expand_as(y0)
            y = y0 * g
            z, z_hat = lc._z_hat(y, q, lg)
            psi, a, mu, _ = lc._anchor_params(z_hat, y.shape, lc._shift(lg, exact=True), q)
            y_hat_a = torch.where(a, torch.round(y - mu) + mu, torch.zeros_like(y))
            mu_n, _ = lc._nonanchor_params(psi, y_hat_a, lc._shift(lg, exact=True), q)
            psi_real = lc.h_s(z_hat)
            mu_real, _ = lc._params_real(psi_real, torch.zeros_like(psi_real), lc._shift(lg), lg)
            ctx = lc.g_ctx(lc._times_real(y_hat_a, -lg))
            mu_n_real, _ = lc._params_real(psi_real, ctx, lc._shift(lg), lg)
            assert float((mu - mu_real)[a].abs().max()) <= 2 ** -7
            # (the context's input, y_hat / g, may differ by one grid step between exp(-log_gain) and its
            # 16-bit grid, and e carries that on: compared in gain-free units)
            assert float(((mu_n - mu_n_real) / g)[~a].abs().max()) <= 2 ** -6
            free["a"].append(mu[a] / g[a])
            free["n"].append(mu_n[~a] / g[~a])
        for half in free.values():
            assert float(half[0].abs().max()) > 0.5
            assert torch.allclose(half[0], half[1], atol=0.03)


def test_checkerboard_refuses_to_code_before_its_gain_grids_are_built():
    from neuralcodecs.codecs.minnen2018 import Minnen2018

    m = Minnen2018.for_training(name="minnen2018")
    for em in m.latent_codec.entropy_models():
        em.update_tables()  # the densities' tables only
    m.eval()
    y = torch.randn(1, m.log_gain.shape[1], 4, 4)
    with pytest.raises(RuntimeError, match="update_tables"), torch.no_grad():
        m.latent_codec.compress(y, 3, m.log_gain[[3]])
    m.update_tables()
    with torch.no_grad():
        assert len(m.latent_codec.compress(y, 3, m.log_gain[[3]])) == 1


def test_the_anchor_pass_without_context_is_the_pass_with_a_zero_context():
    """_params_exact(psi, None) skips e's products with the (zero) context and gives the same means and indexes
    as the context's zeros written out."""
    from neuralcodecs.codecs.minnen2018 import Minnen2018
    from neuralcodecs.entropy.latent import checkerboard

    torch.manual_seed(3)
    m = Minnen2018.for_training(name="minnen2018")
    m.update_tables()
    lc = m.latent_codec
    psi = torch.round(torch.randn(1, lc.h_s[-1].conv.out_channels, 6, 5) * 3000) / 256
    zeros = torch.zeros(1, lc.g_ctx[0].conv.out_channels, 6, 5)
    shift, gain, where = lc._shift(m.log_gain[[2]], exact=True), lc._grid(lc.gain_grid, 2), checkerboard(6, 5)
    skipped, written = lc._params_exact(psi, None, shift, gain, where), lc._params_exact(psi, zeros, shift, gain, where)
    assert all(torch.equal(a, b) for a, b in zip(skipped, written))


_DECODE = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from neuralcodecs.codecs.minnen2018 import Minnen2018
torch.manual_seed(0)
m = Minnen2018.for_training(name="minnen2018"); m.update_tables(); m.eval()
chunks = [open(p, "rb").read() for p in sys.argv[2:-1]]
with torch.no_grad():
    y_hat = m.latent_codec.decompress(chunks, (1, 192, 4, 8), 6, m.log_gain[[6]])
np.save(sys.argv[-1], y_hat.numpy())
"""


def test_checkerboard_round_trip_is_exact_in_other_processes(photo, tmp_path):
    from neuralcodecs.codecs.minnen2018 import Minnen2018
    from neuralcodecs.image import pad

    torch.manual_seed(0)
    m = Minnen2018.for_training(name="minnen2018")
    m.update_tables()
    m.eval()
    x = pad(photo[:64, :128], 64)  # y of 4x8 latents
    with torch.no_grad():
        y = m.latents(x)
        chunks = m.latent_codec.compress(y, 6, m.log_gain[[6]])
        y_hat = m.latent_codec.decompress(chunks, tuple(y.shape), 6, m.log_gain[[6]])
    assert len(chunks) == 1 and float((y_hat - y).abs().max()) <= 0.5
    estimate = m.latent_codec.estimate_bits(y, 6, m.log_gain[[6]])
    assert abs(8 * sum(map(len, chunks)) - estimate) <= 0.01 * estimate + 192
    paths = []
    for i, c in enumerate(chunks):
        paths.append(tmp_path / f"c{i}")
        paths[-1].write_bytes(c)
    for threads in (1, 2):
        subprocess.run([sys.executable, "-c", _DECODE, str(threads), *map(str, paths), str(tmp_path / "y.npy")],
                       check=True)
        assert np.array_equal(np.load(tmp_path / "y.npy"), y_hat.numpy())


@pytest.mark.parametrize("name", ["balle2017", "theis2017"])
def test_rate_points_evaluated_in_one_batch_equal_each_density_on_its_own(name):
    import neuralcodecs as nc

    m = nc.create_codec(name).train()
    try:
        y = torch.randn(6, m.log_gain.shape[1], 4, 4) * 2
        q = torch.tensor([0, 3, 5, 1, 0, 2])
        torch.manual_seed(1)
        _, bits = m.latent_codec(y, q, m.log_gain[q])
        torch.manual_seed(1)
        noise = torch.empty_like(y).uniform_(-0.5, 0.5)
        ref = torch.cat([m.latent_codec.priors[int(k)].bits(y[i:i + 1] + noise[i:i + 1]) for i, k in enumerate(q)])
        assert torch.equal(bits["y"], ref)
    finally:
        m.eval()


@pytest.mark.parametrize("cls", CONDITIONALS)
def test_conditional_tables_stored_back_to_back(cls):
    g = cls()
    half = g.table_half.long()
    assert g.table_counts.shape == (int((2 * half + 2).sum()),)


@pytest.mark.parametrize("name", ["balle2017", "theis2017"])
def test_forward_adaptive_choice_round_trips_and_never_costs_more(name, photo):
    """Forward adaptation: the decoder gets exactly the encoder's y_hat (each channel on its chosen table's grid),
    the bytes are the estimate, and the choice costs at most one bit more than rate point q's tables alone (the
    flag that says none was written), on a photo less; on a tiny image the fixed tables are kept."""
    import neuralcodecs as nc

    codec = nc.create_codec(name, quality=3)
    lc, q = codec.latent_codec, 2
    assert lc.forward_adaptive  # the default
    for image, adapts in ((photo, True), (photo[:16, :16], False)):
        with torch.no_grad():
            y = codec.latents(codec._prepare(image))
        data = lc.compress(y, q, codec.log_gain[[q]])[0]
        choice, tables, estimate = lc._choose(y, q)
        adapted = choice is not None
        medians = torch.from_numpy(lc._chosen(choice, q, tables)[2]).view(1, -1, 1, 1)
        y_hat = lc.decompress([data], tuple(y.shape), q, codec.log_gain[[q]])
        assert torch.equal(y_hat, torch.round(y - medians) + medians)
        assert abs(8 * len(data) - estimate) <= 0.01 * estimate + 64
        fixed = lc.priors[q].estimate_bits(y)
        assert estimate <= fixed + 1 + 1e-6
        assert adapted == adapts and (estimate < fixed) == adapts


def test_files_without_a_newer_setting_decode_as_they_were_made(photo):
    """A setting added after files existed (forward_adaptive) names in its field the value those files were made
    with (codec.FILE_DEFAULT): a file whose settings lack it decodes with fixed tables, as it was written."""
    import dataclasses
    import json

    import neuralcodecs as nc
    from neuralcodecs import container

    img = photo
    codec = nc.create_codec("balle2017", quality=4, forward_adaptive=False)
    data = codec.encode(img)
    header, _, chunks = nc.codec.open_file(data)
    old = container.pack("balle2017", {k: v for k, v in header.settings.items() if k != "forward_adaptive"},
                         header.fingerprint, img.shape, chunks)
    assert "forward_adaptive" not in json.dumps(nc.info(old))
    assert np.array_equal(nc.decode(old), nc.decode(data))
    assert nc.decode(nc.encode(img, "balle2017", quality=4)).shape == img.shape  # the default: adaptive
    field = {f.name: f for f in dataclasses.fields(type(codec).Config)}["forward_adaptive"]
    assert field.default is True and field.metadata[nc.codec.FILE_DEFAULT] is False


@pytest.mark.parametrize("name", ["balle2018", "minnen2018"])
def test_hyperprior_shifts_round_trip_and_never_cost_more(name, photo):
    """Forward adaptation of a hyperprior: per channel a shift of the scale indexes, written before y. The decoder
    gets the encoder's y_hat, the bytes are the estimate, and the shifts cost at most one bit (the flag) more than
    none; on a photo they pay, on a tiny image none are written."""
    import neuralcodecs as nc

    shifted = nc.create_codec(name, quality=3)
    plain = nc.create_codec(name, quality=3, forward_adaptive=False)
    lc, q = shifted.latent_codec, 2
    assert lc.forward_adaptive and not plain.latent_codec.forward_adaptive
    whole = nc.load_image(Path(__file__).parents[1] / "samples" / "kodim23.png")  # a 96x128 crop has too few values
    for image, adapts in ((whole, True), (photo[:16, :16], False)):
        x = shifted._prepare(image)
        with torch.no_grad():
            y = shifted.latents(x)
        strings = lc.compress(y, q, shifted.log_gain[[q]])
        estimate, fixed = lc.estimate_bits(y, q, shifted.log_gain[[q]]), plain.estimate_bits(x)
        assert abs(8 * sum(map(len, strings)) - estimate) <= 0.01 * estimate + 128
        assert estimate <= fixed + 1 + 1e-6 and (estimate < fixed) == adapts
        assert (lc._coding(y, q, shifted.log_gain[[q]]).delta is not None) == adapts
        expected = plain.latent_codec.decompress(plain.latent_codec.compress(y, q, plain.log_gain[[q]]), tuple(y.shape),
                                                 q, plain.log_gain[[q]])
        assert torch.equal(lc.decompress(strings, tuple(y.shape), q, shifted.log_gain[[q]]), expected)


def test_a_boolean_setting_takes_only_true_or_false():
    """A file (or a caller) could give "false", which Python reads as true: every setting whose default is a bool
    refuses anything but True and False (registry.Entry.config), for files as a BitstreamError."""
    import neuralcodecs as nc

    for value in ("false", 0, 1, [1]):
        with pytest.raises(ValueError, match="true or false"):
            nc.create_codec("balle2017", forward_adaptive=value)
    assert not nc.create_codec("balle2017", forward_adaptive=False).latent_codec.forward_adaptive


@pytest.mark.parametrize("name", ["balle2018", "minnen2018"])
def test_the_conditional_changes_the_bytes_not_the_pixels(name):
    """`conditional`: the same indexes and y_hat coded with a logistic (the default) or the paper's Gaussian. Both
    files decode to the same pixels, each file's bytes are its estimate, and on a photo the logistic's are fewer
    (README: about 1.2 % on Kodak). The string names its conditional, so any decoder reads both; the files'
    settings do not (only the encoder reads it)."""
    import neuralcodecs as nc

    whole = nc.load_image(Path(__file__).parents[1] / "samples" / "kodim23.png")
    codecs = {c: nc.create_codec(name, quality=5, conditional=c) for c in ("logistic", "gaussian")}
    files = {c: codec.encode(whole) for c, codec in codecs.items()}
    assert nc.create_codec(name).config.conditional == "logistic"
    assert nc.info(files["logistic"])["settings"] == nc.info(files["gaussian"])["settings"]
    assert "conditional" not in nc.info(files["logistic"])["settings"]
    assert np.array_equal(nc.decode(files["logistic"]), nc.decode(files["gaussian"]))
    assert len(files["logistic"]) < 0.995 * len(files["gaussian"])
    for c, data in files.items():
        assert abs(8 * len(data) - codecs[c].estimate_bits(codecs[c]._prepare(whole))) <= 0.01 * 8 * len(data) + 8 * 200
        other = codecs["gaussian" if c == "logistic" else "logistic"]
        header, _, chunks = nc.codec.open_file(data)
        assert np.array_equal(other.decode_file(header, chunks), nc.decode(data))
    with pytest.raises(ValueError, match="conditional"):
        nc.create_codec(name, conditional="laplace")



@pytest.mark.parametrize("name, wrong", [("balle2018", 3), ("minnen2018", 2)])
def test_hyperprior_files_of_a_chunk_count_no_layout_has_are_refused(name, wrong, photo):
    """One string now, two (balle2018) or three (minnen2018) in the earlier layout: any other count is a
    BitstreamError before anything is decoded."""
    import neuralcodecs as nc
    from neuralcodecs import container

    data = nc.encode(photo, name, quality=3)
    header, _, chunks = nc.codec.open_file(data)
    assert len(chunks) == 1
    bad = container.pack(name, header.settings, header.fingerprint, photo.shape, chunks * wrong)
    with pytest.raises(nc.BitstreamError, match="chunks"):
        nc.decode(bad)
