"""The Hungarian matcher on hand-made cases, against a brute force over every assignment."""

import itertools

import torch

from groprompt.matching import hungarian_match, matching_cost


def brute_force(cost: list[list[float]], targets: list[int]) -> dict[int, int]:
    """query -> target of the assignment of least total cost that gives each target in ``targets`` its own query."""
    queries = range(len(cost))
    best = min(itertools.permutations(queries, len(targets)), key=lambda chosen: sum(cost[q][m] for q, m in zip(chosen, targets)))
    return dict(zip(best, targets))


def test_each_present_target_gets_its_own_query_at_the_least_total_cost() -> None:
    # greedy would give query 0 to target 0 (cost 1) and then query 1 to target 1 (cost 10): 11 in all;
    # the optimum gives query 0 to target 1 and query 1 to target 0: 2 + 3 = 5
    cost = torch.tensor([[1.0, 2.0], [3.0, 10.0], [9.0, 9.0]])
    matched = hungarian_match(cost, torch.tensor([True, True]))
    assert matched.tolist() == [1, 0, -1]
    assert {q: int(m) for q, m in enumerate(matched) if m >= 0} == brute_force(cost.tolist(), [0, 1])


def test_absent_targets_are_never_matched_and_no_target_leaves_every_query_unmatched() -> None:
    cost = torch.tensor([[[1.0, 0.0], [0.5, 4.0]], [[1.0, 0.0], [0.5, 4.0]]])  # two rows, 2 queries, 2 targets
    present = torch.tensor([[True, False], [False, False]])
    assert hungarian_match(cost, present).tolist() == [[-1, 0], [-1, -1]]


def test_random_costs_agree_with_brute_force() -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        cost = torch.rand(5, 3, generator=generator)
        present = torch.rand(3, generator=generator) > 0.3
        targets = torch.nonzero(present).flatten().tolist()
        matched = hungarian_match(cost, present)
        assert {q: int(m) for q, m in enumerate(matched) if m >= 0} == (brute_force(cost.tolist(), targets) if targets else {})


def test_matching_cost_by_hand() -> None:
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]])  # one query, cxcywh
    targets = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]])
    cost = matching_cost(boxes, targets, torch.tensor([0.8]), l1=5.0, giou=2.0, score=1.0)
    # target 0: identical, GIoU 1: 0 + 0 - 0.8; target 1: L1 0.1, IoU 0.1 * 0.2 / (0.08 - 0.02) = 1/3 with an
    # enclosing box equal to the union (0.3 x 0.2 = 0.06): 5 * 0.1 + 2 * (1 - 1/3) - 0.8
    assert torch.allclose(cost, torch.tensor([[-0.8, 0.5 + 4 / 3 - 0.8]]), atol=1e-5)
