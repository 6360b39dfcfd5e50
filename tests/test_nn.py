"""GDN / IGDN (Ballé et al. 2016, 2017) and the gradient-friendly lower bound."""
from __future__ import annotations

import copy

import torch
import pytest

from neuralcodecs.nn import GDN, LowerBound, lower_bound

torch.set_num_threads(1)


def _reference(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool) -> torch.Tensor:
    norm = torch.sqrt(beta[None, :, None, None] + torch.einsum("ij,njhw->nihw", gamma, x ** 2))
    return x * norm if inverse else x / norm


def _random_gdn(c: int, inverse: bool, seed: int = 0) -> GDN:
    g = torch.Generator().manual_seed(seed)
    gdn = GDN(c, inverse=inverse)
    gdn.beta = 0.5 + torch.rand(c, generator=g)
    gdn.gamma = 0.3 * torch.rand(c, c, generator=g)
    return gdn


def test_identity_when_gamma_zero_and_beta_one():
    gdn = GDN(3)
    gdn.beta, gdn.gamma = torch.ones(3), torch.zeros(3, 3)
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(gdn(x), x, rtol=0, atol=1e-6)
    igdn = GDN(3, inverse=True)
    igdn.beta, igdn.gamma = torch.ones(3), torch.zeros(3, 3)
    torch.testing.assert_close(igdn(x), x, rtol=0, atol=1e-6)


def test_initialization():
    gdn = GDN(4, gamma_init=0.1)
    torch.testing.assert_close(gdn.beta, torch.ones(4))
    torch.testing.assert_close(gdn.gamma, 0.1 * torch.eye(4))


@pytest.mark.parametrize("inverse", [False, True])
def test_closed_form(inverse):
    gdn = _random_gdn(5, inverse)
    x = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(1))
    expected = _reference(x, gdn.beta.detach(), gdn.gamma.detach(), inverse)
    torch.testing.assert_close(gdn(x), expected, rtol=1e-5, atol=1e-6)


def test_igdn_of_gdn_single_channel():
    b, g = 0.7, 0.4
    gdn, igdn = GDN(1), GDN(1, inverse=True)
    for m in (gdn, igdn):
        m.beta, m.gamma = torch.tensor([b]), torch.tensor([[g]])
    x = torch.linspace(-4, 4, 17).view(1, 1, 1, 17)
    y = x / torch.sqrt(b + g * x ** 2)
    z = y * torch.sqrt(b + g * y ** 2)  # IGDN normalizes by y, not x: not an exact inverse
    torch.testing.assert_close(gdn(x), y)
    torch.testing.assert_close(igdn(gdn(x)), z)
    assert not torch.allclose(z, x, atol=1e-2)
    # With gamma = 0 both are scalings by sqrt(beta), and IGDN does invert GDN.
    for m in (gdn, igdn):
        m.gamma = torch.zeros(1, 1)
    torch.testing.assert_close(igdn(gdn(x)), x)


def test_gradients_flow():
    gdn = _random_gdn(4, inverse=False)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    (gdn(x) ** 2).sum().backward()
    for t in (x.grad, gdn.beta_param.grad, gdn.gamma_param.grad):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0


def test_bound_keeps_beta_feasible_and_lets_it_recover():
    gdn = GDN(3, beta_min=1e-6)
    opt = torch.optim.SGD(gdn.parameters(), lr=10.0)
    gdn.beta.sum().backward()  # pushes beta down, far past zero
    opt.step()
    assert (gdn.beta_param < 0).all()  # the raw parameter is infeasible ...
    assert (gdn.beta >= 1e-6).all()  # ... the effective beta is not
    opt.zero_grad()
    before = gdn.beta_param.detach().clone()
    (-gdn.beta.sum()).backward()  # now a loss that wants beta larger: the gradient must get through
    assert (gdn.beta_param.grad < 0).all()
    opt.step()
    assert (gdn.beta_param > before).all()  # moving back toward the feasible region


def test_lower_bound_gradient_rule():
    x = torch.tensor([-1.0, 2.0, -1.0], requires_grad=True)
    y = lower_bound(x, 0.0)
    torch.testing.assert_close(y, torch.tensor([0.0, 2.0, 0.0]))
    y.backward(torch.tensor([1.0, 1.0, -1.0]))
    # below the bound: blocked when descent would push x further down, passed when it pulls x up
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, -1.0]))
    assert LowerBound.apply(torch.tensor([3.0]), torch.tensor(5.0)).item() == 5.0


@pytest.mark.parametrize("inverse", [False, True])
def test_autocast_bfloat16(inverse):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    gdn = _random_gdn(4, inverse)
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        y = gdn(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    expected = _reference(h.float(), gdn.beta.detach(), gdn.gamma.detach(), inverse)
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)
    y.float().sum().backward()
    assert torch.isfinite(gdn.gamma_param.grad).all()


def test_channels_last():
    gdn = _random_gdn(4, inverse=False)
    x = torch.randn(2, 4, 6, 5)
    x_cl = x.to(memory_format=torch.channels_last)
    y = gdn(x_cl)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, gdn(x))


def test_rejects_wrong_shape():
    with pytest.raises(ValueError):
        GDN(3)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError):
        GDN(3)(torch.randn(3, 5, 5))


def test_integer_convolutions_cut_among_threads_give_the_same_integers(monkeypatch):
    """exact() cuts a large convolution's output channels among the coding threads (nn/integer.py): with every
    convolution cut, the integers are those of the uncut ones."""
    from neuralcodecs.nn import integer

    torch.manual_seed(0)
    net = integer.IntegerNetwork(integer.IntegerConv(16, 24, 5, 2, transposed=True), torch.nn.ReLU(),
                                 integer.IntegerConv(24, 32, 3))
    ctx = integer.IntegerNetwork(integer.IntegerConv(32, 48, 5))
    z = torch.round(torch.randn(1, 16, 9, 7) * 2000) / 256
    on_anchors = (torch.arange(10)[:, None] + torch.arange(9)) % 2 == 0
    anchors = torch.round(torch.randn(1, 32, 10, 9) * 2000) / 256 * on_anchors
    whole = net.exact(z), ctx.exact_checkerboard(anchors)
    monkeypatch.setattr(integer, "PARALLEL_MACS", 0)
    for threads in (3, 4):  # the context's pass: its two output phases, then also their channels cut in two
        monkeypatch.setattr(integer, "coding_threads", lambda: threads)
        cut = net.exact(z), ctx.exact_checkerboard(anchors)
        assert all(torch.equal(a, b) for a, b in zip(whole, cut))


@pytest.mark.parametrize("transposed", [False, True])
def test_integer_networks_skip_trailing_zero_channels_exactly(transposed):
    """exact(x, trailing_zeros=k) of x without its last k channels (zeros) is exact() of the whole input, also
    through a ReLU before the first convolution; a channel count that does not add up is refused."""
    from neuralcodecs.nn import integer

    torch.manual_seed(1)
    net = integer.IntegerNetwork(torch.nn.ReLU(), integer.IntegerConv(20, 24, 3, 2 if transposed else 1, transposed),
                                 torch.nn.ReLU(), integer.IntegerConv(24, 8, 1))
    x = torch.round(torch.randn(1, 12, 6, 5) * 3000) / 256
    whole = net.exact(torch.cat([x, torch.zeros(1, 8, 6, 5)], dim=1))
    assert torch.equal(net.exact(x, trailing_zeros=8), whole)
    with pytest.raises(ValueError):
        net.exact(x, trailing_zeros=7)


def test_the_cached_integer_weights_follow_the_weights():
    """exact()'s integer weights are cached (nn/integer.py): after the weights change in place, get other
    storage (.data replaced, as .to() and .half() do) or are replaced, the outputs are a fresh copy's."""
    from neuralcodecs.nn import integer

    torch.manual_seed(0)
    net = integer.IntegerNetwork(integer.IntegerConv(16, 24, 5, 2, transposed=True), torch.nn.ReLU(),
                                 integer.IntegerConv(24, 32, 3))
    ctx = integer.IntegerNetwork(integer.IntegerConv(32, 48, 5))
    z = torch.round(torch.randn(1, 16, 9, 7) * 2000) / 256
    anchors = torch.round(torch.randn(1, 32, 10, 9) * 2000) / 256 * ((torch.arange(10)[:, None] + torch.arange(9)) % 2 == 0)

    def fresh(n):
        n = copy.deepcopy(n)
        for m in n:
            m.__dict__.pop("_exact_cache", None)
        return n

    changes = [lambda n: n[0].conv.weight.add_(1 / 64),
               lambda n: setattr(n[0].conv.weight, "data", n[0].conv.weight.data * -2),
               lambda n: setattr(n[0].conv, "weight", torch.nn.Parameter(n[0].conv.weight.detach() / 3))]
    seen = [net.exact(z)]
    for change in changes:
        ctx.exact_checkerboard(anchors)  # cached before the change
        with torch.no_grad():
            change(net)
            change(ctx)
        seen.append(net.exact(z))
        assert torch.equal(seen[-1], fresh(net).exact(z)) and not torch.equal(seen[-1], seen[-2])
        assert torch.equal(ctx.exact_checkerboard(anchors), fresh(ctx).exact_checkerboard(anchors))
