import pytest

from rewards.aggregate import AGGREGATIONS, aggregate, parse_aggregation

SCORES = [0.9, 0.5, 0.7]


@pytest.mark.parametrize(
    "method, expected",
    [("mean", 0.7), ("min", 0.5), ("max", 0.9), ("last", 0.7), ("prod", 0.9 * 0.5 * 0.7)],
)
def test_plain_aggregations(method, expected):
    assert aggregate(SCORES, method) == pytest.approx(expected)


def test_softmin_at_two_temperatures():
    # Scores (0, 1): weights (1, e^(-1/T)), so softmin = 1 / (1 + e^(1/T)):
    # T = 1 gives 1 / (1 + e) = 0.2689414; T = 0.5 gives 1 / (1 + e^2) = 0.1192029.
    assert aggregate([0.0, 1.0], "softmin", temperature=1.0) == pytest.approx(0.2689414)
    assert aggregate([0.0, 1.0], "softmin", temperature=0.5) == pytest.approx(0.1192029)


def test_softmin_temperature_in_the_name_overrides_the_argument():
    assert aggregate([0.0, 1.0], "softmin:0.5", temperature=3.0) == pytest.approx(0.1192029)
    assert parse_aggregation("softmin:0.5") == ("softmin", 0.5)
    assert parse_aggregation(" Mean ") == ("mean", None)


def test_softmin_lies_between_min_and_mean():
    assert aggregate(SCORES, "softmin", temperature=1e-3) == pytest.approx(0.5)
    assert aggregate(SCORES, "softmin", temperature=1e3) == pytest.approx(0.7, abs=1e-4)
    assert 0.5 < aggregate(SCORES, "softmin", temperature=0.1) < 0.7


@pytest.mark.parametrize("method", AGGREGATIONS)
def test_single_step_orm_mode_returns_the_score(method):
    assert aggregate([0.42], method) == pytest.approx(0.42)


@pytest.mark.parametrize(
    "scores, method, temperature, message",
    [
        ([], "mean", 1.0, "empty"),
        ([0.5, float("nan")], "mean", 1.0, "NaN"),
        ([0.5], "median", 1.0, "unknown aggregation"),
        ([0.5], "softmin", 0.0, "temperature"),
        ([0.5], "softmin", -1.0, "temperature"),
        ([0.5], "softmin:0", 1.0, "temperature"),
        ([0.5], "softmin:cold", 1.0, "not a number"),
        ([0.5], "mean:0.5", 1.0, "only softmin"),
    ],
)
def test_errors(scores, method, temperature, message):
    with pytest.raises(ValueError, match=message):
        aggregate(scores, method, temperature=temperature)
