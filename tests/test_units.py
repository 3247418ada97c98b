import pytest

from autocompress.exceptions import BadInputError
from autocompress.units import parse_budget, parse_size


@pytest.mark.parametrize(
    ("text", "ms"),
    [("10ms", 10.0), ("0.5ms", 0.5), ("800us", 0.8), ("800µs", 0.8), ("1s", 1000.0), (".5ms", 0.5), ("2e1ms", 20.0), ("10 ms", 10.0), (" 0.5 ms ", 0.5)],
)
def test_budget_forms_parse_to_milliseconds(text: str, ms: float) -> None:
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["10", "abc", "-1ms", "0ms", "ten ms", "1e999ms", "10MS", "", "ms", "nanms"])
def test_bad_budgets_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(BadInputError, match=r"e\.g\. 10ms, 0\.5ms, 800us, 1s"):
        parse_budget(text)


def test_sizes_parse_to_bytes() -> None:
    assert parse_size("2MB") == 2_000_000
    assert parse_size("1.5MiB") == int(1.5 * 1024**2)
    assert parse_size("500kb") == 500_000
    with pytest.raises(BadInputError):
        parse_size("2")
