"""The torchvision repair: its NMS against a plain reference, and inertness where ops load."""

import numpy as np
import torch

from groprompt import compat


def reference_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Textbook greedy NMS in plain Python."""

    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    remaining = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining if iou(boxes[best], boxes[i]) <= threshold]
    return keep


def test_nms_matches_reference_on_random_boxes() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(30):
        n = 1 + trial * 3
        corners = torch.rand(n, 2, generator=generator) * 100
        sizes = torch.rand(n, 2, generator=generator) * 40 + 1
        boxes = torch.cat([corners, corners + sizes], dim=1)
        scores = torch.rand(n, generator=generator)
        for threshold in (0.1, 0.5, 0.8):
            expected = reference_nms(boxes.tolist(), scores.tolist(), threshold)
            assert compat.nms(boxes, scores, threshold).tolist() == expected
            assert torch.ops.torchvision.nms(boxes, scores, threshold).tolist() == expected


def test_nms_of_nothing_is_empty() -> None:
    assert compat.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_libraries_that_need_torchvision_import() -> None:
    import segment_anything  # noqa: F401
    import timm  # noqa: F401
    import torchvision
    from segment_anything.utils.transforms import ResizeLongestSide
    from transformers import BertModel  # noqa: F401

    # What the project uses of torchvision through segment_anything (FrozenSam.prepare): torchvision's PIL resize.
    # A 3 x 6 frame, longest side to 12: scale 2, so (6, 12). Its left half is 0 and its right half 200: the outer
    # output columns sample input x = 0.25 and 5.75, three columns away from the edge between the halves.
    frame = np.zeros((3, 6, 3), dtype=np.uint8)
    frame[:, 3:] = 200
    resized = ResizeLongestSide(12).apply_image(frame)
    assert resized.shape == (6, 12, 3) and resized.dtype == np.uint8
    assert (resized[:, 0] == 0).all() and (resized[:, -1] == 200).all()
    assert torchvision.transforms.functional.to_pil_image(frame).size == (6, 3)  # PIL: (width, height)


def test_inert_where_compiled_ops_load(monkeypatch) -> None:
    monkeypatch.setattr(compat, "_LIBRARY", None)
    monkeypatch.setattr(compat, "_compiled_ops_load", lambda: True)
    assert compat.register_missing_torchvision_ops() is False
    assert compat._LIBRARY is None
