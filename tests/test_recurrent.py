"""Toderici et al.'s recurrent cells and binarizer."""
import pytest
import torch

from neuralcodecs.nn.recurrent import Binarizer, ConvGRUCell, ConvLSTMCell

torch.set_num_threads(1)


@pytest.mark.parametrize("cell_type", [ConvLSTMCell, ConvGRUCell])
def test_cells_downsample_and_carry_state(cell_type):
    torch.manual_seed(0)
    cell = cell_type(3, 8, kernel=3, stride=2, hidden_kernel=3)
    x = torch.randn(2, 3, 16, 12)
    h1, s1 = cell(x, None)
    assert h1.shape == (2, 8, 8, 6)
    h2, _ = cell(x, s1)
    assert not torch.allclose(h1, h2)  # the same input gives a different output once there is state
    assert h1.abs().max() <= 1  # tanh-bounded hidden state


def test_lstm_closed_form_first_step():
    # with zero state: c = sigmoid(i) tanh(g), h = sigmoid(o) tanh(c)
    cell = ConvLSTMCell(1, 1, kernel=1)
    with torch.no_grad():
        cell.conv_x.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1))
        cell.conv_x.bias.zero_()
    x = torch.full((1, 1, 1, 1), 0.5)
    h, (_, c) = cell(x, None)
    i, o, g = 0.5, 1.5, 2.0
    c_ref = torch.sigmoid(torch.tensor(i)) * torch.tanh(torch.tensor(g))
    assert c.item() == pytest.approx(c_ref.item(), rel=1e-6)
    assert h.item() == pytest.approx((torch.sigmoid(torch.tensor(o)) * torch.tanh(c_ref)).item(), rel=1e-6)


def test_binarizer_is_unbiased_in_training_and_sign_when_coding():
    torch.manual_seed(0)
    b = Binarizer(4, 2)
    x = torch.randn(64, 4, 8, 8)
    b.train()
    draws = torch.stack([b(x) for _ in range(200)])
    assert set(draws.unique().tolist()) == {-1.0, 1.0}
    expected = torch.tanh(b.conv(x))
    assert (draws.mean(0) - expected).abs().mean() < 0.05  # E[b] = tanh(conv(x))
    b.eval()
    assert torch.equal(b(x), torch.where(expected >= 0, 1.0, -1.0))


def test_binarizer_gradient_passes_straight_through():
    b = Binarizer(2, 3).train()
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    b(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
