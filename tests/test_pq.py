"""Product quantization (quant/pq.py): the activation-aware EM, the file format and the layer rules."""
import numpy as np
import torch
from torch import nn

from neuralcodecs.quant import PQConfig, load, pq, quantize, save


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 1), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU(), nn.Conv2d(64, 32, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 40))


def test_em_minimizes_the_output_error_not_the_weight_error():
    torch.manual_seed(1)
    # inputs with very unequal scales: the weight error of plain k-means is not what the output sees
    x = torch.randn(2000, 8) * torch.tensor([10.0, 0.1, 5, 0.1, 1, 1, 0.1, 3])
    w = torch.randn(300, 8)  # 300 outputs x 8 inputs, blocks of d = 4: groups 0 and 1
    blocks, groups = w.reshape(-1, 4), torch.arange(2).repeat(300)
    xg = x.reshape(-1, 2, 4).double()
    gram = torch.einsum("ngi,ngj->gij", xg, xg)
    aware, a = pq.em(blocks, groups, gram, 16, 15, 0)
    plain, p = pq.em(blocks, groups, torch.eye(4, dtype=torch.float64).repeat(2, 1, 1), 16, 15, 0)
    out_err = lambda c, idx: float(((x @ (w - c[idx].reshape(300, 8)).T) ** 2).sum())  # noqa: E731
    assert out_err(aware, a) < 0.7 * out_err(plain, p)


def test_quantize_save_load_round_trip():
    net = _net()
    cfg = PQConfig(codewords=4, em_iterations=5)
    x = torch.randn(8, 3, 16, 16)
    names = [n for n, _ in pq.quantizable(net, cfg)]
    assert "0" not in names and {"2", "4", "6", "9"} <= set(names)  # the first layer stays, depthwise is quantized
    quantize(net, x, cfg)
    with torch.no_grad():
        y = net(x)
    data = save(net, "toy", cfg)
    loaded = load(data, lambda name: _net())
    with torch.no_grad():
        assert torch.allclose(loaded(x), y, atol=2e-2, rtol=2e-2)  # fp16 codebooks and biases
    for name in ("2", "4", "6", "9"):
        assert len(torch.unique(loaded.get_submodule(name).weight.reshape(-1, pq.block_size(loaded.get_submodule(name), False)), dim=0)) <= 4


def test_pack_unpack():
    rng = np.random.default_rng(0)
    for bits in (1, 3, 8, 10):
        idx = rng.integers(0, 2 ** bits, 1001)
        assert np.array_equal(pq._unpack(pq._pack(idx, bits), len(idx), bits), idx)
        assert len(pq._pack(idx, bits)) == -(-len(idx) * bits // 8)


def test_per_layer_block_sizes():
    net = _net()
    cfg = PQConfig(codewords=4, em_iterations=2, sizes=(("6", 2), ("9", 8)))
    assert pq.block_size(net[6], False, cfg.size_of("6")) == 2 and pq.block_size(net[9], False, cfg.size_of("9")) == 8
    assert pq.block_size(net[2], False, cfg.size_of("2")) == 4 and pq.block_size(net[6], True, cfg.size_of("6")) == 4
    result = quantize(net, torch.randn(8, 3, 16, 16), cfg)
    assert result["6"][0].shape == (4, 2) and result["9"][0].shape == (4, 8)


def test_batch_norm_statistics_reestimated_on_the_images_given():
    from neuralcodecs.quant.classifier import reestimate_batch_norm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    x = torch.randn(64, 3, 8, 8) * 3 + 1
    reestimate_batch_norm(net, x, batch=16)
    with torch.no_grad():
        h = net[0](x)
    assert not net.training
    assert torch.allclose(net[1].running_mean, h.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(net[1].running_var, h.var(dim=(0, 2, 3)), rtol=0.05)


def test_a_file_loads_trainable_and_fine_tuning_goes_on_from_it():
    net = _net()
    cfg = PQConfig(codewords=4, em_iterations=3, sizes=(("9", 8),))
    x = torch.randn(8, 3, 16, 16)
    quantize(net, x, cfg)
    data = save(net, "toy", cfg)
    assert pq.config_of(data) == cfg
    student = load(data, lambda name: _net(), trainable=True)
    with torch.no_grad():
        assert torch.equal(student(x), load(data, lambda name: _net())(x))
    books = pq.codeword_parameters(student)
    assert len(books) == 4 and books[-1].shape == (4, 8)
    # one distillation step with the blocks' outputs matched moves the codewords and keeps the assignments
    teacher = _net()
    objective = pq.Distillation(student, teacher, taps=[(student[2], teacher[2]), (student[6], teacher[6])],
                                feature_weight=1.0)
    out = objective.loss(x)
    assert {"loss", "kl", "features"} <= set(out) and float(out["features"]) > 0
    assert torch.isclose(out["loss"], out["kl"] + out["features"])
    before = [b.detach().clone() for b in books]
    opt = torch.optim.Adam(books, lr=1e-2)
    out["loss"].backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, books))
    again = load(save(student, "toy", cfg), lambda name: _net())
    w = again.get_submodule("9").weight.reshape(-1, 8)
    assert len(torch.unique(w, dim=0)) <= 4
