"""The vLLM plugin's entry point and its behaviour without vLLM (runs everywhere; the tests
against the real vLLM registry are in test_vllm_registry.py)."""

import importlib.metadata
import sys

import pytest

from int8_moe import vllm_plugin


def test_entry_point_is_declared():
    try:
        importlib.metadata.distribution("int8-moe")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("int8-moe is on PYTHONPATH but not pip-installed, so it has no entry points")
    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    assert any(ep.name == "int8_moe" and ep.value == "int8_moe.vllm_plugin:register" for ep in eps)


def test_register_without_vllm_is_a_quiet_no_op(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    monkeypatch.setattr(vllm_plugin, "_registered", False)
    with caplog.at_level("DEBUG", logger="int8_moe.vllm_plugin"):
        vllm_plugin.register()
        vllm_plugin.register()
    assert vllm_plugin._registered is False
    assert "vLLM is not installed" in caplog.text
