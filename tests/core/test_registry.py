import pytest

from bench.errors import UserError
from bench.registry import ATTACKS, RECIPES, Registry


def test_did_you_mean():
    with pytest.raises(UserError, match=r"unknown recipe 'pgd_at'; did you mean 'pgd-at'"):
        RECIPES.get("pgd_at")


def test_lazy_entry_imported_on_first_use():
    reg = Registry("thing", load_plugins=False)
    reg.add_lazy("join", "os.path:join")
    assert isinstance(reg._items["join"], str)
    import os.path

    assert reg.get("join") is os.path.join


def test_module_object_plugin_lookup():
    fgsm = ATTACKS.get("bench.attacks.fgsm:FGSM")
    assert fgsm is ATTACKS.get("fgsm")
    with pytest.raises(UserError, match="cannot import"):
        RECIPES.get("no_such_pkg.mod:Thing")


def test_duplicate_registration_refused():
    reg = Registry("thing", load_plugins=False)
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)


def test_domains_found_by_entry_point():
    from bench.registry import DOMAINS, TRACKS, load_domains

    assert "image" in load_domains()
    assert "image-mnist5k-linf-0.3" in TRACKS.names()
