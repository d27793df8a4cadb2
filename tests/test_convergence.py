"""A run counts as converged when its validation curve is flat over its last quarter, within binomial noise."""
from nlbench.report.ablation import flat_at_the_end


def _record(points, val=400):
    steps = [50 * (i + 1) for i in range(len(points))]
    return {"curve": [{"step": s, "val_top1": v} for s, v in zip(steps, points)],
            "config": {"data": {"split_sizes": [6400, val, 1000]}}}


def test_a_curve_still_rising_is_not_flat():
    assert flat_at_the_end(_record([50, 55, 60, 66, 70, 74, 80, 86])) is False  # +12 over the last 3 points


def test_a_curve_within_noise_is_flat():
    # at 75 % on 400 clips one standard error is 2.2 points: 1.96 x sqrt(2) of it is 6.0
    assert flat_at_the_end(_record([50, 60, 70, 74, 75, 78.25, 76.5, 76.25])) is True
    assert flat_at_the_end(_record([50, 60, 70, 74, 75, 78.25, 73.0, 76.25])) is True
    assert flat_at_the_end(_record([50, 60, 70, 74, 75, 80.5, 72.0, 76.25])) is False


def test_a_solved_task_is_flat_and_a_run_without_a_curve_is_not_judged():
    assert flat_at_the_end(_record([50, 90, 99.75, 100, 100, 100, 99.75, 100])) is True
    assert flat_at_the_end({"curve": [], "config": {}}) is None
    assert flat_at_the_end({"curve": [{"step": 1, "val_top1": 50}, {"step": 2, "val_top1": 60}]}) is None
