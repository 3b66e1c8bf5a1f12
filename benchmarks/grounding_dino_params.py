"""Trainable and total parameters of the paper's generator: a Grounding DINO of the base size (Swin-B, BERT-base),
built with random weights, frozen as ``model.freeze`` says (default: backbone, text encoder, feature enhancer),
plus the ModalCon head over SAM ViT-B embeddings; printed beside the paper's Table 5.

    python benchmarks/grounding_dino_params.py

Nothing is downloaded: the configuration is written out here as IDEA-Research/grounding-dino-base's (Swin-B at 384
pixels with windows of 12, out_indices 2-4; BERT-base; the rest transformers' GroundingDinoConfig defaults: d_model
256, 6 encoder and 6 decoder layers, 900 queries, 4 feature levels).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout

import groprompt  # noqa: F401  (first: repairs torchvision before transformers imports it)
from groprompt.config import FREEZE_GROUPS
from groprompt.models.grounding_dino import GroundingDinoGenerator
from groprompt.models.modalcon import ModalConHead
from groprompt.models.text import default_text_encoder_path

SAM_VIT_B_DIM = 256  # channels of SAM's image embedding (every SAM size)
PAPER = {"ReferFormer": "~112M", "OnlineRefer": "~221M", "DEVA": "~112M", "GroPrompt": "~15M"}  # Table 5, trainable


def base_config() -> object:
    """transformers' GroundingDinoConfig with the backbone and text encoder of grounding-dino-base."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    swin = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, out_indices=[2, 3, 4], image_size=384)
    return GroundingDinoConfig(backbone_config=swin, text_config=BertConfig())  # BertConfig() is BERT-base


def base_generator(freeze: tuple[str, ...] = FREEZE_GROUPS, dtype: str = "float32") -> GroundingDinoGenerator:
    """The base-size generator with random weights (a BERT-base-sized vocabulary: the packaged uncased WordPiece);
    ``dtype`` of its frozen parts (``model.encoder_dtype``)."""
    from transformers import AutoTokenizer, GroundingDinoForObjectDetection

    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path())
    detector = GroundingDinoForObjectDetection(base_config())
    return GroundingDinoGenerator(detector, tokenizer, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), freeze, image_size=800, dtype=dtype)


def count(module: torch.nn.Module, trainable: bool) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def main() -> None:
    started = time.perf_counter()
    generator = base_generator()
    modalcon = ModalConHead(SAM_VIT_B_DIM, generator.sentence_dim)
    detector = generator.detector
    parts = {
        "image backbone (Swin-B)": detector.model.backbone,
        "text encoder (BERT-base)": detector.model.text_backbone,
        "feature enhancer (encoder)": detector.model.encoder,
        "decoder": detector.model.decoder,
    }
    print(f"built in {time.perf_counter() - started:.0f} s; torch {torch.__version__}; frozen: {', '.join(FREEZE_GROUPS)}")
    for name, part in parts.items():
        print(f"  {name:30s} {count(part, False):>13,} parameters, {count(part, True):>12,} trainable")
    detector_total, detector_trainable = count(detector, False), count(detector, True)
    print(f"  {'Grounding DINO (whole)':30s} {detector_total:>13,} parameters, {detector_trainable:>12,} trainable")
    print(f"  {'ModalCon head':30s} {count(modalcon, False):>13,} parameters, {count(modalcon, True):>12,} trainable")
    trainable = detector_trainable + count(modalcon, True)
    total = detector_total + count(modalcon, False)
    print(f"GroPrompt with the grounding-dino generator: {trainable:,} trainable of {total:,} ({trainable / 1e6:.1f}M trainable)")
    print("paper, Table 5 (trainable): " + ", ".join(f"{k} {v}" for k, v in PAPER.items()))
    print(f"DEVA's ~112M / {trainable / 1e6:.1f}M = {112e6 / trainable:.1f}x fewer trainable parameters here")


if __name__ == "__main__":
    main()
