"""Product-quantized codec weights (quant/codec.py, codecs/balle2017_pq.py): what pack() writes loads back
to the same network, the coding tables exactly, and the file is what it claims to be."""
import numpy as np
import pytest
import torch

from neuralcodecs.codecs.balle2017_pq import Balle2017PQ
from neuralcodecs.quant import PQConfig, pq
from neuralcodecs.quant.codec import pack, quantize_gdn, unpack


def _small(seed=0):
    torch.manual_seed(seed)
    codec = Balle2017PQ(Balle2017PQ.Config(N=16, M=16), name="balle2017-pq")
    codec.update_tables()
    return codec.eval()


def test_pack_unpack_round_trip_keeps_network_and_tables():
    codec = _small()
    counts = codec.latent_codec.priors[0].table_counts
    counts[0] = 2 ** 16  # a dead channel's single symbol holds all the mass: the largest count there is
    cfg = PQConfig(codewords=16, em_iterations=3, sizes=(("g_a.0", 3), ("g_s.5", 1)), codebook_sizes=(("g_s.3", 32),))
    x = torch.rand(2, 3, 64, 64)
    pq.quantize(codec, x, cfg, batch=2)
    quantize_gdn(codec, x, cfg, 4, batch=2)
    assert {n for n, _ in pq.quantizable(codec, cfg)} == {"g_a.0", "g_a.2", "g_a.4", "g_s.1", "g_s.3", "g_s.5"}
    state = pack(codec)
    # a layer with a codebook of its own size: 32 codewords, 5-bit indices
    assert state["g_s.3.weight.codebook"].shape == (32, 25) and state["g_s.1.weight.codebook"].shape == (16, 25)
    assert len(state["g_s.3.weight.indices"]) == 16 * 16 * 5 // 8  # 256 whole kernels, 5 bits each
    # no density parameters, 16-bit counts, codebooks and indices instead of weights
    assert not any(k.endswith((".matrices.0", ".quantiles")) for k in state)
    assert state["latent_codec.priors.0.table_counts"].dtype == torch.int16
    assert "g_s.5.weight" not in state and state["g_s.5.weight.codebook"].shape == (16, 1)
    assert state["g_a.1.gamma_param.codebook"].shape == (16, 4)
    loaded = _small(seed=1)
    loaded.load_weights(state)
    with torch.no_grad():
        for k, v in codec.state_dict().items():
            if ".parametrizations." in k or "matrices" in k or "biases" in k or "factors" in k or "quantiles" in k:
                continue
            assert torch.equal(loaded.state_dict()[k], v.half().float() if v.is_floating_point() else v), k
        for name in ("g_a.0", "g_s.3", "g_s.5"):
            assert torch.equal(loaded.get_submodule(name).weight, codec.get_submodule(name).weight.half().float())
        assert torch.equal(loaded.g_s[0].gamma, codec.g_s[0].gamma.half().float()) or \
            torch.allclose(loaded.g_s[0].gamma, codec.g_s[0].gamma, atol=1e-3)
    assert int(loaded.latent_codec.priors[0].table_counts[0]) == 2 ** 16
    # the weights hold few distinct values: what the file says
    w = loaded.g_s[5].weight
    assert len(torch.unique(w)) <= 16


def test_unpack_refuses_indices_beyond_the_codebook():
    codec = _small()
    cfg = PQConfig(codewords=16, em_iterations=2)
    pq.quantize(codec, torch.rand(2, 3, 64, 64), cfg, batch=2)
    state = pack(codec)
    state["g_a.2.weight.codebook"] = state["g_a.2.weight.codebook"][:12]  # 4-bit indices up to 15
    with pytest.raises(ValueError, match=r"g_a\.2"):
        unpack(_small(), state)


def test_sixteen_bit_counts_cover_every_count_a_table_can_hold():
    codec = _small()
    counts = codec.latent_codec.priors[1].table_counts
    counts[:3] = torch.tensor([1, 2 ** 15, 2 ** 16], dtype=counts.dtype)
    state = pack(codec)
    back = unpack(_small(), state)["latent_codec.priors.1.table_counts"]
    assert back.dtype == torch.int32 and np.array_equal(back.numpy(), counts.numpy())


def test_shipped_weights_are_an_eighth_of_balle2017s_and_code_with_its_tables():
    """The file as shipped (xz-compressed) against balle2017's file as shipped."""
    from neuralcodecs import create_codec, weights

    m, d = weights.manifest(), weights.weights_dir()
    assert (d / m["balle2017-pq"]["file"]).stat().st_size <= (d / m["balle2017"]["file"]).stat().st_size / 8
    quantized, teacher = create_codec("balle2017-pq"), create_codec("balle2017")
    # its own coding tables travel in its file: they are those of its teacher, balle2017 as shipped when it was
    # made (the manifest records that teacher's fingerprint), and balle2017 has trained on since
    tables = [k for k in quantized.state_dict() if k.startswith("latent_codec.") and ".table_" in k]
    assert len(tables) == 40 and m["balle2017-pq"]["pq"]["teacher_fingerprint"]
    # each 5x5 layer codes rows of 5 taps: at most 256 distinct rows in each, where balle2017 has one per row
    for layer in (quantized.g_a[2], quantized.g_a[4], quantized.g_s[1], quantized.g_s[3]):
        assert len(torch.unique(layer.weight.reshape(-1, 5), dim=0)) <= 256
    assert len(torch.unique(teacher.g_a[2].weight.reshape(-1, 5), dim=0)) > 10000


def test_a_packed_file_parametrizes_again_for_further_fine_tuning():
    """parametrize_packed: pack()'s state loads as codebook[assignments] again, same network, densities from
    the teacher's state (the file drops them), so fine-tuning can go on from a shipped file."""
    from neuralcodecs.quant.codec import parametrize_packed

    codec = _small()
    cfg = PQConfig(codewords=16, em_iterations=2, sizes=(("g_a.0", 3), ("g_s.5", 1)))
    x = torch.rand(2, 3, 64, 64)
    pq.quantize(codec, x, cfg, batch=2)
    quantize_gdn(codec, x, cfg, 4, batch=2)
    teacher = {k: v + 1 if "matrices" in k else v for k, v in _small(seed=2).state_dict().items()}
    again = parametrize_packed(_small(seed=1), pack(codec), teacher)
    assert {n.split(".parametrizations.")[0] for n, m in again.named_modules() if isinstance(m, pq.PQWeight)} == \
        {n.split(".parametrizations.")[0] for n, m in codec.named_modules() if isinstance(m, pq.PQWeight)}
    for name in ("g_a.2", "g_s.5"):
        assert torch.equal(again.get_submodule(name).weight, codec.get_submodule(name).weight.half().float())
    k = "latent_codec.priors.0.matrices.0"
    assert torch.equal(again.state_dict()[k], teacher[k])
    assert len(pq.codeword_parameters(again)) == len(pq.codeword_parameters(codec))


def test_quantize_codec_moves_assignments_with_reassignment_and_goes_on_from_a_packed_file(tmp_path):
    """quantize_codec: EM, GDNs, then fine-tuning; with reassign_every the assignments move and every
    quantized weight is still codebook[assignments]; start=True fine-tunes a packed file further, no EM."""
    from PIL import Image

    from neuralcodecs.quant.codec import parametrize_packed, quantize_codec
    from neuralcodecs.train.data import RandomCrops

    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = RandomCrops([tmp_path], 64)
    cfg = PQConfig(codewords=16, em_iterations=2, sizes=(("g_a.0", 3), ("g_s.5", 1)))
    codec = quantize_codec(_small(), cfg, data, calibration=2, steps=6, batch=2, lr=1e-2, gdn_block=4,
                           reassign_every=2, latent_lr=5e-2, log=lambda s: None)
    weights = [m for m in codec.modules() if isinstance(m, pq.PQWeight)]
    assert len(weights) == 12 and all(m.latent is not None for m in weights)
    for m in weights:
        assert torch.equal(m(None).detach(), pq.PQWeight(m.codebook.detach(), m.assign, m.shape, m.transposed)(None))
    state = pack(codec)
    # densities that would not tabulate to the file's tables (as a half-precision file's need not)
    teacher = {k: v + 0.5 if "matrices" in k else v for k, v in _small().state_dict().items()}
    again = parametrize_packed(_small(seed=3), state, teacher)
    before = {n: m.assign.clone() for n, m in again.named_modules() if isinstance(m, pq.PQWeight)}
    gains, counts = again.log_gain.detach().clone(), again.latent_codec.priors[3].table_counts.clone()
    quantize_codec(again, cfg, data, calibration=2, steps=6, batch=2, lr=1e-2, gdn_block=4, reassign_every=2,
                   latent_lr=5e-2, start=True, tune_gains=True, log=lambda s: None)
    after = {n: m for n, m in again.named_modules() if isinstance(m, pq.PQWeight)}
    assert after.keys() == before.keys()  # no second EM: the same quantized tensors, parametrized once
    assert any(not torch.equal(before[n], m.assign) for n, m in after.items())
    # the gains moved, the tables (rebuilt from the frozen densities) are the teacher's to the count
    assert not torch.equal(again.log_gain.detach(), gains)
    assert torch.equal(again.latent_codec.priors[3].table_counts, counts) and \
        torch.equal(counts, _small().latent_codec.priors[3].table_counts)
