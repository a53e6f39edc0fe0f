"""Shared fixtures: small generated Sudoku datasets, built once per session."""
import pytest

from tasks.sudoku.build_mini import build as build_mini_sudoku


@pytest.fixture(scope="session")
def mini_sudoku(tmp_path_factory):
    """mini_sudoku(box_rows, box_cols, train_size, test_size, seed) -> path of a built dataset (cached)."""
    built = {}

    def make(box_rows: int = 2, box_cols: int = 2, train_size: int = 500, test_size: int = 64, seed: int = 0) -> str:
        key = (box_rows, box_cols, train_size, test_size, seed)
        if key not in built:
            path = tmp_path_factory.mktemp("data") / "sudoku{}x{}-{}-{}-{}".format(*key)
            build_mini_sudoku(str(path), box_rows, box_cols, train_size, test_size, seed)
            built[key] = str(path)
        return built[key]

    return make
