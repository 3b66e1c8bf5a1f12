"""The ModalCon head: shapes, unit output, temporal averaging, and attention to the image."""

import torch

from groprompt.models.modalcon import ModalConHead


def test_output_is_unit_and_averages_frames() -> None:
    torch.manual_seed(0)
    head = ModalConHead(embed_dim=16, text_dim=12, num_heads=2).eval()
    prompts = torch.randn(3, 4, 2, 16)
    embeddings = torch.randn(3, 4, 16, 5, 5)
    pe = torch.randn(16, 5, 5)
    video = head(prompts, embeddings, pe)
    assert video.shape == (3, 12)
    assert torch.allclose(video.norm(dim=-1), torch.ones(3), atol=1e-5)
    reversed_time = head(prompts.flip(1), embeddings.flip(1), pe)
    assert torch.allclose(video, reversed_time, atol=1e-5)  # average pooling: order-free
    other_image = head(prompts, torch.randn(3, 4, 16, 5, 5), pe)
    assert not torch.allclose(video, other_image)
