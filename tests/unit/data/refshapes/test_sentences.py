"""The expressions: every object has two, every type occurs, and each is true and unique by an independent check
(a multi-object one of exactly its group's objects, a leaves-frame one of the only object of its look that leaves)."""

from __future__ import annotations

from groprompt.data.refshapes.scene import COLOURS, SHAPES, SIZES
from groprompt.data.refshapes.sentences import KINDS
from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo
from tests.unit.data.refshapes.pixels import centroid, measured_motion, touches_border

MOTION_WORDS = {"left": "left", "right": "right", "up": "up", "upwards": "up", "down": "down", "downwards": "down"}
COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5}
LEAVING_WORDS = ("leaves the frame", "out of the frame", "out of view")
POSITION_WORDS = {
    "left": "left",
    "leftmost": "left",
    "right": "right",
    "rightmost": "right",
    "top": "top",
    "highest": "top",
    "bottom": "bottom",
    "lowest": "bottom",
}


def singular(word: str) -> str:
    """``circles`` -> ``circle``, ``crosses`` -> ``cross``, ``objects`` -> ``object``; other words as they are."""
    for ending in ("es", "s"):
        if word.endswith(ending) and word[: -len(ending)] in (*SHAPES, "object", "shape"):
            return word[: -len(ending)]
    return word


def parse(text: str) -> dict[str, str | int | bool | None]:
    """What a sentence names: leaving the frame, a position ("on the left", "the highest ...") or else a motion, a look,
    and whether it speaks of several objects (a plural noun) and how many (a number word)."""
    words = [singular(word) for word in text.split()]
    pick = lambda vocabulary: next((w for w in words if w in vocabulary), None)  # noqa: E731
    leaves = any(phrase in text for phrase in LEAVING_WORDS)
    placed = " on the " in text or " at the " in text or bool({"leftmost", "rightmost", "highest", "lowest"} & set(words))
    still = "still" in words or "not" in words
    return {
        "shape": pick(SHAPES),
        "colour": pick(COLOURS),
        "size": pick(SIZES),
        "motion": None if placed or leaves else "still" if still else MOTION_WORDS.get(pick(MOTION_WORDS) or ""),
        "position": POSITION_WORDS.get(pick(POSITION_WORDS) or "") if placed else None,
        "leaves": leaves,
        "plural": words != text.split(),
        "count": COUNT_WORDS.get(pick(COUNT_WORDS) or ""),
    }


def test_every_object_has_two_expressions_and_all_types_occur(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            assert len([e for e in video.expressions if e.obj_id == obj.obj_id]) >= 2
        assert [e.exp_id for e in video.expressions] == [str(i) for i in range(len(video.expressions))]
        assert len({e.text for e in video.expressions}) == len(video.expressions)
    assert {e.kind for video in videos for e in video.expressions} == set(KINDS)


def test_every_expression_is_true_and_unique_by_an_independent_check(spec: RefShapesSpec, videos: list[SyntheticVideo]) -> None:
    for video in videos:
        motion = {obj.obj_id: measured_motion(video, obj) for obj in video.objects}
        for expression in video.expressions:
            words = parse(expression.text)
            names_look = any(words[name] for name in ("shape", "colour", "size"))
            expected_kind = {
                (True, False, False): "appearance",
                (False, True, False): "motion",
                (True, True, False): "appearance+motion",
            }.get((names_look, words["motion"] is not None, words["position"] is not None), "position")
            expected_kind = "multi-object" if words["plural"] else "leaves-frame" if words["leaves"] else expected_kind
            assert expression.kind == expected_kind, expression
            candidates = [
                obj
                for obj in video.objects
                if all(words[name] in (None, getattr(obj, name)) for name in ("shape", "colour", "size"))
                and (words["motion"] is None or motion[obj.obj_id] == words["motion"])
            ]
            if words["plural"]:
                members = [obj.obj_id for obj in candidates]
                assert list(video.groups[expression.obj_id]) == members and 2 <= len(members) < len(video.objects), expression
                assert words["count"] in (None, len(members)), expression
                continue
            if words["leaves"]:
                masks = [[ids == obj.obj_id for ids in video.ids] for obj in candidates]
                leaving = [any(touches_border(m[t]) and not m[-1].any() for t in range(spec.frames)) for m in masks]
                never_at_the_border = [not any(map(touches_border, m)) for m in masks]
                assert [obj.obj_id for obj, gone in zip(candidates, leaving) if gone] == [expression.obj_id], expression
                assert sum(never_at_the_border) == len(candidates) - 1, expression
                continue
            if words["position"] is None:
                assert [obj.obj_id for obj in candidates] == [expression.obj_id], expression
                continue
            assert len(candidates) >= 2, expression
            axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[words["position"]]
            keys = sorted((sign * centroid(video.ids[0] == obj.obj_id)[axis], obj.obj_id) for obj in candidates)
            assert keys[0][1] == expression.obj_id, expression
            assert keys[1][0] - keys[0][0] > 0.1 * spec.size, expression
