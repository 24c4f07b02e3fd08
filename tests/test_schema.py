"""llmos_tf.schema: the dataclass checker shared by the run config and the model registry."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from llmos_tf import config
from llmos_tf.errors import ConfigError
from llmos_tf.models import registry
from llmos_tf.schema import build, did_you_mean


@dataclass
class Inner:
    units: int = 4
    rate: float | None = None


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    sizes: list[int] = field(default_factory=list)


def test_build_coerces_and_nests():
    out = build(Outer, {"name": "a", "inner": {"units": 8.0, "rate": 1}, "sizes": [1, 2.0]}, "")
    assert out == Outer(name="a", inner=Inner(units=8, rate=1.0), sizes=[1, 2])
    assert isinstance(out.inner.units, int) and isinstance(out.inner.rate, float)


def test_build_names_the_bad_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        build(Outer, {"inner": {"unitz": 3}}, "model")
    assert str(err.value) == "unknown config key 'model.inner.unitz' (did you mean 'units'?); valid keys in model.inner: units, rate"
    assert err.value.key == "model.inner.unitz"
    with pytest.raises(ConfigError, match=r"^sizes\[1\]: expected an integer, got 'b'$"):
        build(Outer, {"sizes": [1, "b"]}, "")
    with pytest.raises(ConfigError, match="^name: expected a string, got None$"):
        build(Outer, {"name": None}, "")


def test_did_you_mean():
    assert did_you_mean("lstm_unitz", ["lstm_units", "dropout"]) == " (did you mean 'lstm_units'?)"
    assert did_you_mean("zzz", ["lstm_units"]) == ""


def test_config_and_registry_share_the_checker():
    assert config.build is build and config.did_you_mean is did_you_mean
    assert registry.build is build
    with pytest.raises(ConfigError, match="unknown config key 'model.lstm_unitz' .did you mean 'lstm_units'.."):
        registry.validate_model_config({"architecture": "bilstm", "lstm_unitz": 3})
