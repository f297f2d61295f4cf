"""A session that never asks for the fixture."""


def test_one():
    assert True


def test_two(tmp_path):
    assert tmp_path.exists()
