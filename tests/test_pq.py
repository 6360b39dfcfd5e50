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


def test_transposed_convolution_patches_are_what_its_weights_multiply():
    # the output of a transposed conv is sum over blocks of <patch, kernel>: rebuilt from _patches exactly
    torch.manual_seed(0)
    for stride, k in ((2, 5), (4, 9), (1, 3)):
        m = nn.ConvTranspose2d(3, 2, k, stride=stride, padding=k // 2, output_padding=stride - 1).double()
        x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
        p = pq._patches(m, x)                                           # (N, cin*k*k, L)
        w = pq._as_conv_weight(m, m.weight.detach()).reshape(2, -1)     # (cout, cin*k*k)
        out = torch.einsum("ncl,oc->nol", p, w) + m.bias.detach()[None, :, None]
        with torch.no_grad():
            assert torch.allclose(out.reshape(2, 2, *m(x).shape[2:]), m(x), atol=1e-10)


def _codec_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 9, stride=4, padding=4), nn.ReLU(), nn.Conv2d(8, 64, 5, stride=2, padding=2),
                         nn.ReLU(), nn.ConvTranspose2d(64, 64, 5, stride=2, padding=2, output_padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(64, 3, 9, stride=4, padding=4, output_padding=3))


def test_codec_like_network_with_transposed_convs_and_sub_kernel_blocks():
    net = _codec_net()
    cfg = PQConfig(codewords=8, em_iterations=4, sizes=(("0", 9), ("6", 9)))
    names = [n for n, _ in pq.quantizable(net, cfg)]
    assert names == ["0", "2", "4", "6"]  # the first layer too, as `sizes` names it
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
    quantize(net, x, cfg)
    for name, d in (("0", 9), ("4", 25), ("6", 9)):
        w = pq._as_conv_weight(net.get_submodule(name), net.get_submodule(name).weight)
        assert len(torch.unique(w.reshape(-1, d), dim=0)) <= 8
    loaded = load(save(net, "toy", cfg), lambda name: _codec_net())
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-2)
        assert float(((net(x) - ref) ** 2).mean()) < float((ref ** 2).mean())


def test_refinement_lowers_the_true_output_error_with_correlated_inputs():
    # inputs whose neighbouring values are correlated (like image rows): the per-block EM leaves errors that
    # add up across blocks; re-assigning with the other blocks' errors compensated must lower the true error
    torch.manual_seed(0)
    x = torch.randn(4000, 1).repeat(1, 16) + 0.3 * torch.randn(4000, 16)
    w = torch.randn(200, 16)
    d = 4
    blocks, groups = w.reshape(-1, d), torch.arange(4).repeat(200)
    h = (x.T @ x).double()
    diag = torch.stack([h[b * d:(b + 1) * d, b * d:(b + 1) * d] for b in range(4)])
    codebook, assign = pq.em(blocks, groups, diag, 16, 10, 0)
    refined = pq.refine(codebook, assign, w, h, passes=3)
    err = lambda a: float(((x @ (w - codebook[a].reshape(200, 16)).T) ** 2).sum())  # noqa: E731
    assert err(refined) < 0.7 * err(assign)
    assert err(pq.refine(codebook, refined, w, h, passes=1)) <= err(refined) * (1 + 1e-9)


def test_pq_eval_command_reports_top1_and_sizes(tmp_path, capsys):
    # the command end to end on a two-image labelled folder, with a file of the uncompressed network
    import json

    from PIL import Image

    from neuralcodecs.cli import main
    from neuralcodecs.quant import classifier

    folder = tmp_path / "labelled"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (240, 260, 3), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
    (folder / "labels.csv").write_text("filename,class_index,wnid\nimages/0.png,3,x\nimages/1.png,7,y\n")
    assert classifier.labelled(folder) == [(folder / "images/0.png", 3), (folder / "images/1.png", 7)]
    model = classifier.build("efficientnet-lite0")
    path = tmp_path / "net.pq"
    path.write_bytes(save(model, "efficientnet-lite0", PQConfig()))
    assert main(["pq", "eval", str(path), "--data", str(folder)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 2 and out["top1"] == out["top1_teacher"]  # fp16 of the same network
    assert out["bytes"] == path.stat().st_size and 1.9 < out["teacher_bytes"] / out["bytes"] <= 2  # fp16


def test_per_layer_fine_tuning_runs_after_each_layers_em_on_its_codewords_alone():
    """quantize(after_layer=...) with pq.fine_tune: each layer's codewords are distilled alone, in forward
    order, before the next layer is quantized; every other parameter stays as it was; the loss goes down."""
    teacher, student = _codec_net(), _codec_net()
    objective = pq.Distillation(student, teacher)
    objective.loss = lambda x: {"loss": (student(x) - teacher(x).detach()).square().mean()}
    cfg = PQConfig(codewords=8, em_iterations=4, sizes=(("0", 9), ("6", 9)))
    x = torch.randn(4, 3, 32, 32)
    seen, losses = [], []
    frozen = {n: p.detach().clone() for n, p in student.named_parameters()}

    def after_layer(name, codebook):
        seen.append(name)
        assert codebook is student.get_submodule(name).parametrizations.weight[0].codebook
        em = codebook.detach().clone()
        with torch.no_grad():
            losses.append(float(objective.loss(x)["loss"]))
        pq.fine_tune(objective, [codebook], lambda: x, 30, 1e-3)
        with torch.no_grad():
            losses.append(float(objective.loss(x)["loss"]))
        assert not torch.equal(em, codebook.detach())
        for n, p in student.named_parameters():  # biases and the layers not yet quantized did not move
            if n in frozen:
                assert torch.equal(p, frozen[n]), n

    result = quantize(student, x, cfg, after_layer=after_layer)
    assert seen == ["0", "2", "4", "6"] and list(result) == seen
    assert all(after < before for before, after in zip(losses[::2], losses[1::2]))
    assert torch.equal(result["6"][0], student.get_submodule("6").parametrizations.weight[0].codebook.detach())


def test_stored_parameters_are_what_the_file_keeps_as_it_is():
    net = _net()
    cfg = PQConfig(codewords=4, em_iterations=2)
    quantize(net, torch.randn(8, 3, 16, 16), cfg)
    data = save(net, "toy", cfg)
    student = load(data, lambda name: _net(), trainable=True)
    stored = {id(p) for p in pq.stored_parameters(student)}
    assert not stored & {id(p) for p in pq.codeword_parameters(student)}
    names = {n for n, p in student.named_parameters() if id(p) in stored}
    # the first conv (kept whole) and every bias; no quantized weight's original
    assert names == {"0.weight", "0.bias", "2.bias", "4.bias", "6.bias", "9.bias"}
    from safetensors.torch import load as st_load
    assert names <= set(st_load(data))


def test_random_views_are_normalized_seeded_crops_of_the_photos():
    from neuralcodecs.quant.classifier import random_views

    photos = [torch.full((3, 256, 300), 255, dtype=torch.uint8), torch.zeros((3, 260, 256), dtype=torch.uint8)]
    a = random_views(photos, 6, torch.Generator().manual_seed(0), size=64)
    b = random_views(photos, 6, torch.Generator().manual_seed(0), size=64)
    assert a.shape == (6, 3, 64, 64) and torch.equal(a, b)
    # a white and a black photo: every view is a uniform mixture of the two, between their normalized values
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    lo, hi = (-mean / std).view(1, 3, 1, 1), ((1 - mean) / std).view(1, 3, 1, 1)
    assert ((a >= lo - 1e-5) & (a <= hi + 1e-5)).all()
    assert torch.allclose(a, a.mean(dim=(2, 3), keepdim=True), atol=1e-5)
    assert a.std(dim=0).mean() > 0.1  # the mixtures differ


def test_latent_weights_pass_the_gradient_straight_through_and_reassign_to_the_nearest_codeword():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    w = pq.PQWeight(codebook.clone(), torch.tensor([0, 0, 1]), torch.Size([3, 2]))
    before = w(None).detach().clone()
    latent = w.use_latent()
    assert torch.equal(latent.detach(), before) and w.use_latent() is latent
    g = torch.randn(3, 2)
    (w(None) * g).sum().backward()
    assert torch.equal(w(None).detach(), before)  # the value is still codebook[assignments]
    assert torch.equal(latent.grad, g)            # its gradient reaches the latent unchanged
    with torch.no_grad():
        latent[0] = torch.tensor([0.4, 0.4])       # short of the midpoint to codeword 1: stays
        latent[1] = torch.tensor([0.6, 0.7])       # past it: moves
        latent[2] = torch.tensor([-0.8, 1.9])
    assert w.reassign() == 2 and w.assign.tolist() == [0, 1, 2]


def test_fine_tuning_with_reassignment_fixes_what_fixed_assignments_cannot():
    """A student whose blocks sit on the wrong codewords: fine-tuning the codewords alone cannot undo it; with
    latent weights and reassignment the output error falls further, and the weights stay codebook[index]."""
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    target = torch.randn(32, 16)
    losses = {}
    for every in (0, 10):
        torch.manual_seed(1)
        student = nn.Linear(16, 32, bias=False)
        from torch.nn.utils import parametrize
        codebook = torch.randn(8, 4) * 0.5
        parametrize.register_parametrization(student, "weight", pq.PQWeight(codebook, torch.randint(8, (128,)),
                                                                             student.weight.shape), unsafe=True)
        objective = nn.Module()
        objective.student = student
        objective.loss = lambda batch, s=student: {"loss": (s(batch) - batch @ target.T).square().mean()}
        pq.fine_tune(objective, pq.codeword_parameters(student), lambda: x, 300, 3e-2, reassign_every=every)
        with torch.no_grad():
            losses[every] = float(objective.loss(x)["loss"])
        blocks = student.weight.detach().reshape(-1, 4)
        assert len(torch.unique(blocks, dim=0)) <= 8
    assert losses[10] < 0.7 * losses[0], losses


def test_pq_quantize_options_give_per_layer_block_and_codebook_sizes():
    """--sizes / --codebook-sizes PATTERN=N (repeatable, in order: the first match wins) reach PQConfig as
    its (pattern, value) pairs; a malformed pair is refused before anything runs."""
    import pytest

    from neuralcodecs.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["pq", "quantize", "--calibration", "x", "--out", "y", "--sizes", "_fc=16",
                              "--sizes", "_project_conv=2", "--codebook-sizes", "blocks.1._project=1024"])
    assert args.sizes == [("_fc", 16), ("_project_conv", 2)]
    assert args.codebook_sizes == [("blocks.1._project", 1024)]
    cfg = PQConfig(sizes=tuple(args.sizes), codebook_sizes=tuple(args.codebook_sizes))
    assert cfg.size_of("_blocks.3._fc") == 16 and cfg.size_of("_blocks.1._project_conv") == 2
    assert cfg.codewords_of("_blocks.1._project_conv") == 1024 and cfg.codewords_of("_fc") == 256
    assert parser.parse_args(["pq", "quantize", "--calibration", "x", "--out", "y"]).sizes is None
    for bad in ("_fc", "_fc=", "=4", "_fc=0", "_fc=two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["pq", "quantize", "--calibration", "x", "--out", "y", "--sizes", bad])
