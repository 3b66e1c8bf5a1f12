"""The paper's proposal generator: a pretrained Grounding DINO (``transformers``) fine-tuned on boxes, as the authors did.

Loaded from a local ``save_pretrained`` folder (config, weights, tokenizer, image processor); nothing is downloaded.
The parts named in ``model.freeze`` (image backbone, text encoder, feature enhancer with the projections that feed
it) keep their pretrained weights and run under ``no_grad`` (bfloat16 autocast with ``model.encoder_dtype``);
query selection, decoder and box heads train. Classification stays as pretrained (loss weight 0, as the authors):
a query's confidence is its best class logit over the sentence's tokens, and the top query per frame is the most
confident. Frames are independent (no temporal state); ModalCon's sentence feature is the detector's own text
encoder output, mean-pooled over the real tokens and over the clip's frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree

from groprompt.config import LossConfig, ModelConfig
from groprompt.errors import CheckpointError, ConfigError
from groprompt.models.encoder_options import encoder_autocast
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.generator import FrameOutput

FROZEN_PARAMETERS = {  # model.freeze group -> parameter-name prefixes in GroundingDinoForObjectDetection
    "backbone": ("model.backbone.",),
    "text": ("model.text_backbone.",),
    "encoder": ("model.encoder.", "model.input_proj_vision.", "model.text_projection.", "model.level_embed"),
}
NO_GRAD_MODULES = {"backbone": "backbone", "text": "text_backbone", "encoder": "encoder"}  # under detector.model


def load_detector(folder: str | Path) -> tuple[nn.Module, Any, tuple[float, ...], tuple[float, ...]]:
    """The detector, its tokenizer and its processor's pixel mean and std, from a local folder; a missing or
    mismatched folder is a ``CheckpointError`` naming it."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: not a Grounding DINO folder (no config.json; save it with save_pretrained)")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != "grounding-dino":
        raise CheckpointError(f"{folder}: model_type {model_type!r} in config.json, expected 'grounding-dino'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoImageProcessor, AutoTokenizer, GroundingDinoForObjectDetection

    try:
        detector, info = GroundingDinoForObjectDetection.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as error:  # no weights or tokenizer; weights of other shapes
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{folder}: cannot load a Grounding DINO with its tokenizer and processor ({reason})") from error
    unfit = [*info["missing_keys"], *(str(key) for key in info["mismatched_keys"])]
    if unfit:
        raise CheckpointError(f"{folder}: weights do not fit config.json ({len(unfit)} missing or of another shape, e.g. {unfit[0]})")
    if len(tokenizer) > detector.config.text_config.vocab_size:
        raise CheckpointError(f"{folder}: tokenizer of {len(tokenizer)} tokens does not fit the text encoder's vocabulary")
    return detector, tokenizer, tuple(processor.image_mean), tuple(processor.image_std)


def run_frozen(module: nn.Module, dtype: str) -> None:
    """Make ``module`` compute under ``no_grad`` (and bfloat16 autocast when ``dtype`` says so), floats back in float32."""
    forward = module.forward

    def frozen_forward(*args: Any, **kwargs: Any) -> Any:
        device = next(module.parameters()).device
        with torch.no_grad(), encoder_autocast(device.type, dtype):
            output = forward(*args, **kwargs)
        return _pytree.tree_map(lambda x: x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x, output)

    module.forward = frozen_forward


class SharedImages:
    """The image backbone's forward, run once per distinct image: inside ``sharing(images, index)`` it runs on the M
    ``images`` instead of its N-row input (of which the detector reads only the shape and device), and its outputs
    (feature maps with their masks, position embeddings) are gathered back so that row r gets image ``index[r]``."""

    def __init__(self, backbone: nn.Module) -> None:
        self.forward = backbone.forward
        self.shared: tuple[torch.Tensor, torch.Tensor] | None = None
        backbone.forward = self

    def __call__(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
        if self.shared is None:
            return self.forward(pixel_values, pixel_mask)
        images, index = self.shared
        features, positions = self.forward(images, pixel_mask[: len(images)])  # no padding: every mask is all ones
        return [(f[index], m[index]) for f, m in features], [p[index] for p in positions]

    @contextmanager
    def sharing(self, images: torch.Tensor, index: torch.Tensor) -> Iterator[None]:
        """Row r is image ``index[r]`` of ``images`` (M, 3, S, S), for the calls inside the block."""
        self.shared = images, index
        try:
            yield
        finally:
            self.shared = None


def prompt_text(sentence: str) -> str:
    """A sentence as Grounding DINO's prompts are written: lower case, ending with a full stop."""
    text = sentence.lower().strip()
    return text if text.endswith(".") else f"{text}."


class GroundingDinoGenerator(nn.Module):
    """The ``grounding-dino`` kind of ``groprompt.models.generator.Generator``."""

    def __init__(
        self,
        detector: nn.Module,
        tokenizer: Any,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        freeze: tuple[str, ...],
        image_size: int,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        self.detector = detector
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)
        for name, parameter in detector.named_parameters():
            if any(name.startswith(prefix) for group in freeze for prefix in FROZEN_PARAMETERS[group]):
                parameter.requires_grad_(False)
        self.frozen_modules = [getattr(detector.model, NO_GRAD_MODULES[group]) for group in freeze]
        for module in self.frozen_modules:
            run_frozen(module, dtype)
        self.shared_images = SharedImages(detector.model.backbone)

    @classmethod
    def from_config(cls, config: ModelConfig) -> GroundingDinoGenerator:
        """The pretrained detector in ``model.proposal_weights``, frozen as ``model.freeze`` says."""
        if config.proposal_weights is None:
            raise ConfigError("model.proposal_weights: model.proposal=grounding-dino needs the folder of a pretrained Grounding DINO")
        detector, tokenizer, mean, std = load_detector(config.proposal_weights)
        return cls(detector, tokenizer, mean, std, config.freeze, config.proposal_image_size, config.encoder_dtype)

    @property
    def pixel_size(self) -> int:
        return self.image_size

    @property
    def sentence_dim(self) -> int:
        return int(self.detector.config.text_config.hidden_size)

    def train(self, mode: bool = True) -> GroundingDinoGenerator:
        """The frozen parts stay in evaluation mode (no dropout)."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self

    def loss_config(self, config: LossConfig) -> LossConfig:
        """No confidence or query-selection loss: classification keeps its pretrained weights' meaning."""
        return dataclasses.replace(config, lambda_conf=0.0, lambda_select=0.0)

    def tokens(self, sentences: list[str]) -> dict[str, torch.Tensor]:
        """The sentences tokenised as the detector's prompts, on its device."""
        device = self.mean.device
        encoded = self.tokenizer(
            [prompt_text(s) for s in sentences],
            padding=True,
            truncation=True,
            max_length=self.detector.config.max_text_len,
            return_tensors="pt",
        )
        return {key: value.to(device) for key, value in encoded.items() if key in ("input_ids", "attention_mask", "token_type_ids")}

    def run(
        self,
        frozen: FrozenEncoders,
        embeddings: torch.Tensor,
        pixels: torch.Tensor | None,
        sentences: list[str],
        previous: torch.Tensor | None = None,
    ) -> tuple[list[FrameOutput], torch.Tensor]:
        """Clips of pixels (P, T, 3, S, S) uint8 and B sentences, P dividing B (sentence b reads clip b mod P) -> one
        output per frame and sentence features (B, D); ``previous`` is not read (frames are independent here).

        The B x T rows go through the detector as one batch (frames are independent); the image backbone sees each of
        the P x T frames once."""
        if pixels is None:
            raise ValueError("the grounding-dino generator reads pixels: the clips carry none")
        clips, frames = pixels.shape[:2]
        batch = len(sentences)
        if batch % clips:
            raise ValueError(f"{batch} sentences over {clips} clips: the clips must repeat a whole number of times")
        tokens = {key: value.repeat_interleave(frames, dim=0) for key, value in self.tokens(sentences).items()}
        index = (torch.arange(batch) % clips)[:, None] * frames + torch.arange(frames)
        output, text = self.detect(pixels.flatten(0, 1), index.flatten(), tokens)
        per_frame = [
            FrameOutput(
                boxes=output.boxes.unflatten(1, (batch, frames))[:, :, t],
                logits=output.logits.unflatten(1, (batch, frames))[:, :, t],
                token_logits=output.token_logits.unflatten(0, (batch, frames))[:, t],
                token_centres=output.token_centres,
                token_boxes=output.token_boxes.unflatten(0, (batch, frames))[:, t],
            )
            for t in range(frames)
        ]
        return per_frame, nn.functional.normalize(text.unflatten(0, (batch, frames)).mean(1), dim=-1)

    def stream(self, frozen: FrozenEncoders, sentences: list[str]) -> DetectorStream:
        return DetectorStream(self, sentences)

    def detect(self, images: torch.Tensor, index: torch.Tensor, tokens: dict[str, torch.Tensor]) -> tuple[FrameOutput, torch.Tensor]:
        """Images (M, 3, S, S) uint8, the image of each row (N,) and the N rows' tokenised prompts -> one ``FrameOutput``
        of N rows and the text encoder's features mean-pooled over real tokens (N, D). The image backbone runs once per
        image; the detector's N-row pixel input is a view of the first image (it reads only its shape and device).

        Levels: the encoder's selected proposals (query selection), then one per decoder layer, as the detector's
        own heads compute them."""
        index = index.to(self.mean.device)
        values = (images.to(self.mean.device).float() / 255 - self.mean) / self.std
        text_hidden: list[torch.Tensor] = []
        hook = self.detector.model.text_backbone.register_forward_hook(lambda _m, _i, out: text_hidden.append(out.last_hidden_state))
        try:
            with self.shared_images.sharing(values, index):
                out = self.detector.model(pixel_values=values[:1].expand(len(index), -1, -1, -1), **tokens)
        finally:
            hook.remove()
        mask = tokens["attention_mask"].bool()

        scores = out.enc_outputs_class.amax(-1)  # (N, tokens) each encoder token's best logit over the sentence
        selected = scores.topk(self.detector.config.num_queries, dim=1).indices
        level_boxes = [out.enc_outputs_coord_logits.gather(1, selected[..., None].expand(-1, -1, 4)).sigmoid()]
        level_logits = [scores.gather(1, selected)]
        hidden = out.intermediate_hidden_states
        for level in range(hidden.shape[1]):
            reference = out.init_reference_points if level == 0 else out.intermediate_reference_points[:, level - 1]
            logits = self.detector.class_embed[level](
                vision_hidden_state=hidden[:, level], text_hidden_state=out.encoder_last_hidden_state_text, text_token_mask=mask
            )
            level_logits.append(logits.amax(-1))
            level_boxes.append((self.detector.bbox_embed[level](hidden[:, level]) + torch.special.logit(reference, eps=1e-5)).sigmoid())

        n = len(index)
        output = FrameOutput(
            boxes=torch.stack(level_boxes),
            logits=torch.stack(level_logits),
            token_logits=values.new_zeros(n, 0),  # no query-selection loss: it keeps its pretrained meaning
            token_centres=values.new_zeros(0, 2),
            token_boxes=values.new_zeros(n, 0, 4),
        )
        real = mask[..., None].float()
        pooled = (text_hidden[-1] * real).sum(1) / real.sum(1).clamp(min=1)
        return output, pooled


class DetectorStream:
    """One video's sentences through the detector, frame after frame (frames are independent: no state)."""

    def __init__(self, generator: GroundingDinoGenerator, sentences: list[str]) -> None:
        self.generator = generator
        self.tokens = generator.tokens(list(sentences))

    def step(self, embedding: torch.Tensor, pixels: torch.Tensor | None) -> FrameOutput:
        """The next frame's output, given its pixels (3, S, S) uint8 (its SAM embedding is not read)."""
        if pixels is None:
            raise ValueError("the grounding-dino generator reads pixels: give each frame's (groprompt.data.pixels.frame_pixels)")
        index = torch.zeros(self.tokens["input_ids"].shape[0], dtype=torch.long)
        return self.generator.detect(pixels[None], index, self.tokens)[0]
