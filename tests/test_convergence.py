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


def test_a_group_score_curve_is_judged_on_the_groups():
    # 400 val clips are 100 quadruples: at 50 % one standard error is 5 points, 1.96 x sqrt(2) of it 13.9
    steps = [50 * (i + 1) for i in range(8)]
    tops = [60, 70, 75, 76, 77, 76, 77, 76]
    record = {"curve": [{"step": s, "val_top1": t, "val_group_top1": g}
                        for s, t, g in zip(steps, tops, [0, 10, 20, 30, 40, 50, 45, 58])],
              "config": {"data": {"split_sizes": [6400, 400, 1024]}}}
    assert flat_at_the_end(record) is True
    assert flat_at_the_end(record, "group_top1") is True  # 45-58: within 13.9
    record["curve"][-1]["val_group_top1"] = 62
    assert flat_at_the_end(record, "group_top1") is False  # 17 points over the last quarter
    assert flat_at_the_end(_record([50, 60, 70, 80]), "group_top1") is None  # a curve without the score


def test_near_the_ceiling_the_noise_of_the_two_points_compared_counts():
    # 97 and 100 of 100 groups: pooled p = 0.985, 1.96 x sqrt(2 x 0.985 x 0.015 / 100) = 3.4 points; Fisher's
    # exact test gives p = 0.25 for them. The tail's mean (0.99) would allow 2.8 and call the run still moving.
    steps = [75 * (i + 1) for i in range(8)]
    groups = [14, 1, 87, 99, 99, 97, 100, 100]
    record = {"curve": [{"step": s, "val_top1": 90, "val_group_top1": g} for s, g in zip(steps, groups)],
              "config": {"data": {"split_sizes": [9600, 400, 1024]}}}
    assert flat_at_the_end(record, "group_top1") is True
    record["curve"][-3]["val_group_top1"] = 95  # 95 and 100: 5 points, over the 4.3 allowed at p = 0.975
    assert flat_at_the_end(record, "group_top1") is False
