import headrace as hr


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(hr) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(hr, name)).__name__ == "module"}
    assert set(hr.__all__) - {"__version__"} == public - modules


def test_every_public_name_has_a_docstring() -> None:
    for name in hr.__all__:
        obj = getattr(hr, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__, f"{name} has no docstring"
