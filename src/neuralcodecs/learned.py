"""What every learned codec shares: it is a Codec and a torch.nn.Module, loads shipped weights, and keeps
training (forward: reconstruction and estimated bits) apart from real coding (encode/decode)."""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from . import container, weights
from .codec import ENCODER_ONLY, FILE_DEFAULT, Codec, check_number
from .entropy.latent import LatentCodec
from .entropy.model import EntropyModel, entropy_models
from .image import from_tensor, to_tensor
from .registry import get_entry, list_codecs
from .threads import one_thread, parallel
from .train.step import train_step

_LAYOUT_LOCK = threading.Lock()  # VariableRateCodec._channels_last


class LearnedCodec(Codec, nn.Module):
    """Base of the learned codecs.

    Subclasses build their layers in __init__ (after calling this one) and implement
      forward(x) -> {"x_hat", "bits" (per sample), "lmbda" (per sample)[, "target"]}   training path
      encode_chunks / decode_chunks                                       real coding
    and give the lambdas their training weighs distortion with in `lmbdas` (one per rate point for
    variable-rate models, where quality q uses lmbdas[q - 1]; a single 1.0 where the rate is not learned).
    Codecs whose bits come from a model also implement estimate_bits(x): the model's bits for the padded
    image x, what the real file should cost. `loss` turns forward's output into the training loss
    (rate-distortion by default); a codec with another objective overrides it.
    Entropy models are found among the submodules (every `EntropyModel`): their tables are rebuilt when
    training ends and when weights without tables load, and their auxiliary losses train alongside.
    """

    lmbdas: ClassVar[tuple[float, ...]] = ()
    # Training stages, for methods trained in steps (e.g. theis2017: transforms, then per-rate scales); a
    # stage decides which parameters train (requires_grad) and what forward() samples.
    stages: ClassVar[tuple[str, ...]] = ("all",)
    pad_to = 16
    learned = True

    def __init__(self, config: Any, name: str | None = None, lmbdas: tuple[float, ...] | None = None):
        super().__init__(config, name)
        self.lmbdas = tuple(lmbdas or type(self).lmbdas)
        self._fingerprint: bytes | None = None
        self.stage = self.stages[0]

    def set_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"{self.name} trains in stages {self.stages}, not {stage!r}")
        self.stage = stage

    # Progressive (recurrent) codecs unroll this many iterations in a training step (None: every quality)
    unroll: int | None = None

    def set_unroll(self, iterations: int) -> None:
        if not self.progressive:
            raise ValueError(f"{self.name} is not progressive: it has no iterations to unroll")
        if not 1 <= iterations <= max(self.qualities):
            raise ValueError(f"{self.name} unrolls 1 to {max(self.qualities)} iterations, not {iterations}")
        self.unroll = iterations

    # -- construction ---------------------------------------------------------------------------
    # settings a file or user may choose freely; every other setting is architecture and must be the shipped
    # weights' (checked before anything is built, so a file cannot make the decoder allocate a network of its
    # choosing)
    free_settings: ClassVar[tuple[str, ...]] = ("quality",)

    @classmethod
    def _free(cls) -> set[str]:
        """The settings the weights do not fix: the free ones and those only the encoder reads."""
        encoder_only = (f.name for f in dataclasses.fields(cls.Config) if f.metadata.get("encoder_only"))
        return {*cls.free_settings, *encoder_only}

    @classmethod
    def implied_settings(cls, name: str) -> dict:
        """The settings `name`'s shipped weights fix (architecture): files leave them out (`settings`), since the
        fingerprint in every file names the weights."""
        entry = weights.manifest().get(name)
        if entry is None:
            return {}
        shipped = {**dataclasses.asdict(cls.Config()), **get_entry(name).defaults, **entry.get("settings", {})}
        return {k: v for k, v in shipped.items() if k not in cls._free()}

    @classmethod
    def from_config(cls, config: Any, name: str) -> "LearnedCodec":
        """A ready coder: shipped weights (with their coding tables) loaded, eval mode, CPU."""
        entry = weights.manifest().get(name)
        if entry is None:  # before anything is built: the settings could ask for any size of network
            raise ValueError(f"no trained weights are shipped for {name} (train them with `neuralcodecs train "
                             f"{name}` and `neuralcodecs export`)")
        shipped = cls.implied_settings(name)
        wrong = {k: v for k, v in dataclasses.asdict(config).items() if k in shipped and v != shipped[k]}
        if wrong:
            raise ValueError(f"{name}'s shipped weights have " + ", ".join(f"{k}={shipped[k]!r}" for k in wrong)
                             + "; asked for " + ", ".join(f"{k}={v!r}" for k, v in wrong.items()))
        model = cls(config, name=name)
        # files name the weights by the fingerprint recorded at export, so a module may change its layout
        # without orphaning them
        recorded = bytes.fromhex(entry["fingerprint"]) if entry.get("fingerprint") else None
        model.load_weights(weights.shipped_state(name), fingerprint=recorded)
        return model.eval()

    @property
    def settings(self) -> dict:
        """Codec.settings but for those the weights fix (implied_settings)."""
        return {k: v for k, v in super().settings.items() if k in self._free()}

    @classmethod
    def trained(cls, name: str) -> bool:
        """Whether weights for `name` are installed."""
        return name in weights.manifest()

    @classmethod
    def for_training(cls, lmbdas: list[float] | None = None, name: str | None = None, **settings: Any) -> "LearnedCodec":
        settings = {"quality": cls.Config().quality, **settings}
        return cls(cls.Config(**settings), name=name, lmbdas=tuple(lmbdas or ()) or None)

    def load_weights(self, state: dict[str, torch.Tensor], fingerprint: bytes | None = None) -> None:
        """Load a state (strictly); `fingerprint` names the weights in files (default: computed from them)."""
        # The integer coding tables ship inside the state and are used as they are: rebuilding them from the
        # half-precision densities could round differently on another machine and break bit-exact decoding.
        # (The entropy models' load hooks build tables only when a state lacks them.)
        self.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        self._fingerprint = fingerprint or weights.fingerprint(self.state_dict())

    # -- real coding: every convolution on one thread ------------------------------------------------
    # Decoding must not depend on the caller's thread count (threads.py): coding runs each convolution on one
    # thread, and the codecs that cut their work into pieces fixed by the image (VariableRateCodec's tiles, the
    # integer networks' channels) run the pieces side by side on the caller's threads (threads.parallel).
    def encode(self, image: np.ndarray) -> bytes:
        with one_thread():
            return super().encode(image)

    def decode_file(self, header: container.Header, chunks: list[bytes]) -> np.ndarray:
        with one_thread():
            return super().decode_file(header, chunks)

    def encode_native(self, image: np.ndarray) -> bytes:
        with one_thread():
            return super().encode_native(image)

    # -- training ---------------------------------------------------------------------------------
    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """forward(x) and the rate-distortion loss, mean over the batch of lmbda * 255^2 * MSE + bpp."""
        return self.rd_loss(self(x), x)

    @staticmethod
    def rd_loss(res: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        """The rate-distortion loss of a forward() result for the images x."""
        mse = (res["x_hat"].float() - res.get("target", x)).pow(2).mean(dim=(1, 2, 3))
        bpp = res["bits"] / (x.shape[2] * x.shape[3])
        return {"loss": (res["lmbda"] * 255 ** 2 * mse + bpp).mean(), "bpp": bpp.mean().detach(),
                "mse": mse.mean().detach()}

    # -- entropy models -------------------------------------------------------------------------
    def entropy_models(self) -> list[EntropyModel]:
        return entropy_models(self)

    def entropy_parameters(self) -> list[nn.Parameter]:
        """What models the rate (here the entropy models; VariableRateCodec: its latent codec): training gives
        them their own learning rate (TrainConfig.entropy_lr)."""
        return list(dict.fromkeys(p for m in self.entropy_models() for p in m.parameters()))

    def update_tables(self) -> None:
        """Rebuild the integer coding tables from the learned densities (the training loop does, at its end)."""
        for m in self.entropy_models():
            m.update_tables()

    def aux_loss(self) -> torch.Tensor:
        return sum((m.aux_loss() for m in self.entropy_models()), torch.zeros(()))

    def aux_parameters(self):
        """Parameters trained only by aux_loss (e.g. the learned quantiles of a FactorizedPrior)."""
        for m in self.entropy_models():
            yield from m.aux_parameters()

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            return weights.fingerprint(self.state_dict())
        return self._fingerprint


def forward_adaptive_setting() -> Any:
    """The Config field `forward_adaptive` of a VariableRateCodec: its latent codec adapts the entropy model to the
    image with side information written first (True, the default; entropy/latent.py) or codes with the model
    alone (the papers' codecs). The decoder reads it; files from before it existed were made without it
    (codec.FILE_DEFAULT); the weights do not fix it (free_settings)."""
    return dataclasses.field(default=True, metadata={FILE_DEFAULT: False})


def conditional_setting() -> Any:
    """The Config field `conditional` of a hyperprior codec: the shape of y's density given the scale index its
    networks predict, "logistic" (the default: about 1.2 % fewer bytes from the same networks, README) or the
    papers' "gaussian". Files leave it out (codec.ENCODER_ONLY): a file's string names its conditional
    (entropy/latent.py), and files from before it existed were made with the Gaussian. Training reads it too: a
    run trains its rate term with the conditional of its settings (a run resumed from before it existed, with
    the logistic from then on)."""
    return dataclasses.field(default="logistic", metadata=ENCODER_ONLY)


def refine_setting() -> Any:
    """The Config field `refine` of a VariableRateCodec: steps of encoder-side LatentRefinement (0: none).
    Only the encoder reads it, so files leave it out (codec.ENCODER_ONLY)."""
    return dataclasses.field(default=0, metadata=ENCODER_ONLY)


class VariableRateCodec(LearnedCodec):
    """A transform codec: transforms, per-rate-point gains and a latent codec (entropy/latent.py), one set of
    transforms for every rate point (the shape of balle2017, theis2017, balle2018 and minnen2018):

        x -> g_a -> y * gain[q] -> latent codec (rate point q) -> its strings, one chunk each
                                   -> y_hat -> y_hat * inv_gain[q] -> g_s -> x_hat

    Rate point q has a per-channel gain (gain[q] > 1: a finer quantizer, more bits) and an inverse gain,
    learned on its own (Cui et al.'s inverse gain unit: it starts at 1 / gain[q] and training may move it,
    since the synthesis need not undo the gain exactly); the latent codec keeps
    whatever each point needs of its own (a density, a density of z). Subclasses build `g_a`, `g_s` and
    `latent_codec`, and call `_init_gains`.

    Training (forward): each sample of a batch gets one of `train_points`, cycling so they train equally.
    """

    latent_stride = 16  # pixels per latent along each axis
    latent_codec: LatentCodec
    free_settings = ("quality", "forward_adaptive")  # every one has forward_adaptive_setting()
    # LatentRefinement's learning rate (y in quantizer steps), chosen by the bytes it saved at equal PSNR on single
    # Kodak images; a higher one overshot (README: "Why the constants are what they are").
    refine_lr = 3e-3

    def __init__(self, config: Any, name: str | None = None, lmbdas: tuple[float, ...] | None = None):
        check_number("refine", config.refine, 0, math.inf, meaning="a number of steps (0: none)")
        super().__init__(config, name, lmbdas)

    def _init_gains(self, channels: int, gain0: float) -> None:
        k = len(self.lmbdas)
        # log-gains start on the MSE rule of thumb (the best quantizer step shrinks like lmbda^-1/2) around
        # gain0, the gain of the middle point, chosen per codec so that an untrained g_a's latents are not
        # all rounded to zero
        mid = math.log(self.lmbdas[k // 2])
        init = torch.tensor([math.log(gain0) + 0.5 * (math.log(l) - mid) for l in self.lmbdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, channels).clone())
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, channels).clone())
        self.train_points = list(range(k))

    def update_tables(self) -> None:
        # every entropy model of a transform codec lives in its latent codec, which also tabulates what it
        # derives from the rate points' gains
        self.latent_codec.update_tables(self.log_gain.detach())

    def entropy_parameters(self) -> list[nn.Parameter]:
        # the densities and the networks that predict them (a hyperprior's h_a, h_s, context): the latent codec
        return list(self.latent_codec.parameters())

    def _gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_gain[q].exp()[:, :, None, None], self.log_inv_gain[q].exp()[:, :, None, None]

    def analysis(self, x: Tensor) -> Tensor:
        return self.g_a(x)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat)

    def training_mask(self, channels: int, device: torch.device) -> Tensor | None:
        """Called once per training forward: 1 for the latent channels this step codes, 0 for those it holds at
        zero, which cost no rate (theis2017's incremental training opens them a few at a time); None: all."""
        return None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        b, points = x.shape[0], torch.tensor(self.train_points)
        q = points[(torch.randint(len(points), (1,)) + torch.arange(b)) % len(points)]
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = self.analysis(x).float() * self._gains(q)[0]
        return self.from_latents(y, q, self.training_mask(y.shape[1], y.device) if self.training else None)

    def from_latents(self, y: Tensor, q: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """forward() from the scaled latents y of rate points q on (what LatentRefinement optimizes); `mask`:
        training_mask's channels."""
        with torch.autocast(device_type=y.device.type, enabled=False):
            if mask is not None:
                y = y * mask.view(1, -1, 1, 1)
            y_hat, bits = self.latent_codec(y, q.to(y.device), self.log_gain[q])
            if mask is not None:  # coefficients held at zero cost nothing
                bits["y"] = bits["y"] * mask.view(1, -1, 1, 1)
            total = sum(v.sum(dim=tuple(range(1, v.dim()))) for v in bits.values())
        x_hat = self.synthesis(y_hat * self._gains(q)[1])
        lmbda = torch.tensor(self.lmbdas, device=y.device)[q]
        return {"x_hat": x_hat, "bits": total, "lmbda": lmbda}

    # -- real coding ---------------------------------------------------------------------------------
    # The transforms run in tiles: a cut of the image that depends on its size alone, never on the machine, so
    # that the cores share one image (threads.parallel) and a large one stays in bounded memory (a 12 Mpixel
    # photo in one piece needs 2-4 GB of activations). Each tile sees `margin` of real image around it, at
    # least the transform's reach (measured: a latent of balle2017's g_a reads pixels 28 before to 13 after its
    # own 16, and its g_s pixels read latents 1 before to 2 after; theis2017's overrides), and only its interior
    # is kept, so the tiles compute what the whole image would, up to float rounding; and since the cut is fixed
    # and every tile runs on one thread, every decoder computes the same pixels with any number of threads.
    tile = 1024             # pixels per tile side at most (a multiple of every latent stride)
    split = 512             # a longer side of at least this many pixels is cut in two, for two cores
    analysis_margin = 32    # pixels of context on each side of an analysis tile (rounded up to whole latents)
    synthesis_margin = 3    # latents of context on each side of a synthesis tile
    tiles_at_once = 2       # tiles computed at the same time, so the peak memory is bounded on any machine

    def _tiles(self, hl: int, wl: int) -> list[tuple[int, int, int, int]]:
        """The tiles of an hl x wl latent grid, (row0, row1, col0, col1) in latents: each side cut into the
        fewest near-equal parts of at most `tile` pixels, the longer one into two at least from `split` on."""
        s = self.latent_stride
        parts = [-(-n * s // self.tile) for n in (hl, wl)]
        if parts == [1, 1] and max(hl, wl) * s >= self.split:
            parts[int(wl > hl)] = 2
        rows, cols = ([(n * i // k, n * (i + 1) // k) for i in range(k)] for n, k in zip((hl, wl), parts))
        return [(a, b, c, d) for a, b in rows for c, d in cols]

    def _channels_last(self) -> None:
        """Coding runs the transforms in channels-last layout, where the CPU's convolutions are fastest (README,
        "Results on Kodak": where the time goes); training picks
        its own (TrainConfig.channels_last). The first call converts the weights (new storage), under a lock and
        checked again inside it: a cached decoder serves every thread, and none may convolve with a weight
        another is replacing; once converted, nothing changes."""
        def converted() -> bool:
            return all(p.is_contiguous(memory_format=torch.channels_last) for m in (self.g_a, self.g_s)
                       for p in m.parameters() if p.dim() == 4)

        if converted():
            return
        with _LAYOUT_LOCK:
            if not converted():
                for m in (self.g_a, self.g_s):
                    m.to(memory_format=torch.channels_last)

    def _analyse(self, x: np.ndarray) -> Tensor:
        """g_a of a padded uint8 image, tile by tile (_tiles)."""
        self._channels_last()
        h, w, _ = x.shape
        s, device = self.latent_stride, self.log_gain.device
        hl, wl, m = h // s, w // s, -(-self.analysis_margin // s)  # in latents

        def tile(t: tuple[int, int, int, int]) -> Tensor:
            a, b, c, d = t
            ra, ca = max(0, a - m), max(0, c - m)
            part = np.ascontiguousarray(x[ra * s:min(hl, b + m) * s, ca * s:min(wl, d + m) * s])
            part = to_tensor(part).to(device).contiguous(memory_format=torch.channels_last)
            return self.analysis(part)[:, :, a - ra:b - ra, c - ca:d - ca]

        tiles = self._tiles(hl, wl)
        parts = parallel(tile, tiles, self.tiles_at_once)
        if len(parts) == 1:
            return parts[0]
        y = parts[0].new_empty((1, parts[0].shape[1], hl, wl))
        for (a, b, c, d), part in zip(tiles, parts):
            y[:, :, a:b, c:d] = part
        return y

    def _synthesise(self, y_hat: Tensor) -> np.ndarray:
        """g_s of y_hat as a uint8 image, tile by tile (_tiles)."""
        self._channels_last()
        _, _, hl, wl = y_hat.shape
        s, m = self.latent_stride, self.synthesis_margin

        def tile(t: tuple[int, int, int, int]) -> np.ndarray:
            a, b, c, d = t
            ra, ca = max(0, a - m), max(0, c - m)
            part = y_hat[:, :, ra:min(hl, b + m), ca:min(wl, d + m)].contiguous(memory_format=torch.channels_last)
            part = from_tensor(self.synthesis(part))
            return part[(a - ra) * s:(b - ra) * s, (c - ca) * s:(d - ca) * s]

        tiles = self._tiles(hl, wl)
        parts = parallel(tile, tiles, self.tiles_at_once)
        if len(parts) == 1:
            return parts[0]
        out = np.empty((hl * s, wl * s, 3), np.uint8)
        for (a, b, c, d), part in zip(tiles, parts):
            out[a * s:b * s, c * s:d * s] = part
        return out

    def latents(self, x: np.ndarray) -> Tensor:
        """The scaled latents of a padded image at this codec's rate point (refined, with `refine` steps)."""
        gain, _ = self._gains(torch.tensor([self.config.quality - 1], device=self.log_gain.device))
        y = self._analyse(x) * gain
        return LatentRefinement(self, x, y).run(self.config.refine) if self.config.refine else y

    @torch.no_grad()
    def encode_chunks(self, x: np.ndarray) -> list[bytes]:
        q = self.config.quality - 1
        return self.latent_codec.compress(self.latents(x), q, self.log_gain[[q]])

    @torch.no_grad()
    def estimate_bits(self, x: np.ndarray) -> float:
        q = self.config.quality - 1
        return self.latent_codec.estimate_bits(self.latents(x), q, self.log_gain[[q]])

    @property
    def n_chunks(self) -> int:
        return self.latent_codec.n_strings

    @property
    def legacy_chunks(self) -> tuple[int, ...]:
        legacy = self.latent_codec.legacy_strings
        return () if legacy is None else (legacy,)

    @torch.no_grad()
    def decode_chunks(self, chunks: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
        h, w, _ = shape
        q = self.config.quality - 1
        s = self.latent_stride
        return self.image_of(self.latent_codec.decompress(chunks, (1, self.log_gain.shape[1], h // s, w // s), q,
                                                          self.log_gain[[q]]), q)

    @torch.no_grad()
    def image_of(self, y_hat: Tensor, q: int) -> np.ndarray:
        """The padded uint8 image that latents y_hat (gained units of rate point q) decode to."""
        _, inv_gain = self._gains(torch.tensor([q], device=self.log_gain.device))
        return self._synthesise(y_hat.to(inv_gain.device) * inv_gain)


class LatentRefinement:
    """Encoder-side refinement of one image's latents: with every network fixed, y itself is optimized for
    this image's rate-distortion loss at the codec's rate point (Campos, Meierhans, Djelouah, Schroers,
    "Content Adaptive Optimization for Neural Image Compression", CVPR Workshops 2019; Yang, Bamler, Mandt,
    NeurIPS 2020). g_a's latents are an amortized guess that fits the training images on average; a few
    steps of gradient descent fit them to this image. The decoder is untouched: the refined y is coded like
    any other, so a file made this way is the same format and decodes with the same code.

        y = g_a(x) * gain[q]  ->  `steps` x train_step on  lmbda[q] * 255^2 * MSE(x, g_s(y_hat * inv_gain[q])) + bpp
                                  (the training loss: rate of y + uniform noise, synthesis of round(y) passed
                                  straight through)  ->  y  ->  the latent codec as usual

    Adam on y, the codec's `refine_lr` on a cosine to zero. The noise comes from a fixed seed, so encoding the same
    image twice gives the same bytes. Memory grows with the image, as in training (the whole synthesis is
    differentiated).
    """

    def __init__(self, codec: VariableRateCodec, x: np.ndarray, y: Tensor):
        self.codec, self.y = codec, nn.Parameter(y.detach().clone())
        self.x = to_tensor(x).to(y.device)
        self.q = torch.tensor([codec.config.quality - 1], device=y.device)

    def loss(self, _batch: Any = None) -> dict[str, Tensor]:
        return self.codec.rd_loss(self.codec.from_latents(self.y, self.q), self.x)

    def run(self, steps: int) -> Tensor:
        """The refined y after `steps` steps."""
        c = self.codec
        opt = torch.optim.Adam([self.y], lr=c.refine_lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        was_training, frozen = c.training, [p for p in c.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            devices = [self.y.device] if self.y.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.enable_grad():
                torch.manual_seed(0)
                c.train()  # the training loss's noise and straight-through rounding
                for _ in range(steps):
                    train_step(self, None, opt, clip=None)
                    sched.step()
        finally:
            c.train(was_training)
            for p in frozen:
                p.requires_grad_(True)
        return self.y.detach()


def entropy_coded_codecs() -> list[str]:
    """The ready learned codecs that say how many bits their files should take (estimate_bits: the information
    content under their entropy models, or the raw bits of those without one), to be checked against real files."""
    learned = [n for n in list_codecs(ready=True) if issubclass(get_entry(n).cls, LearnedCodec)]
    return [n for n in learned if hasattr(get_entry(n).cls, "estimate_bits")]


