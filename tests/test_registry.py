import pytest

from zotune.errors import RegistryError, UnknownNameError
from zotune.registry import Registry


def test_lookup_normalises_dashes_and_case():
    reg = Registry("thing")
    reg.register("zo_finetuner", 1)
    assert reg.get("ZO-Finetuner") == 1
    assert "zo-finetuner" in reg


def test_a_name_is_shown_as_registered_and_found_in_either_spelling():
    reg = Registry("thing")
    reg.register("zo-finetuner", 1)
    assert reg.names() == ["zo-finetuner"] and reg.get("zo_finetuner") == 1
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("zo_finetuner", 2)


def test_methods_are_listed_under_the_names_the_docs_use():
    from zotune.methods import METHODS

    assert "zo-finetuner" in METHODS.names() and "zo_finetuner" not in METHODS.names()
    assert METHODS.get("zo_finetuner") is METHODS.get("zo-finetuner")


def test_unknown_name_suggests_close_matches_and_lists_all():
    reg = Registry("method")
    reg.register("mezo", 1)
    reg.register("adalezo", 2)
    with pytest.raises(UnknownNameError, match=r"Did you mean 'mezo'.*Available: adalezo, mezo"):
        reg.get("mezzo")
    with pytest.raises(KeyError):  # still a KeyError for callers who catch that
        reg.get("nothing_like_it")


@pytest.mark.parametrize("name", ["MeZO", "trailing-", "two__joins", "1abc", ""])
def test_invalid_keys_rejected(name):
    with pytest.raises(RegistryError, match="lowercase words"):
        Registry("x").register(name, 0)


def test_duplicate_rejected():
    reg = Registry("x")
    reg.register("a", 0)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a", 1)
