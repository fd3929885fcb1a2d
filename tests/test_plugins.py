"""Methods from other packages: entry points of installed distributions, --plugin / BENCH_PLUGINS
modules, and what goes wrong with them (a broken install warns, a clash or a broken definition is
exit 2), without building anything while loading."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest

from methods import plugins, registry
from tests.conftest import invoke

MODULE = """
from torch import nn

from sam3d_bench import register_method

BUILT = []


@register_method({name!r}, {fields})
def build(in_channels, out_channels, roi_size, width=4):
    BUILT.append(roi_size)
    return nn.Conv3d(in_channels, out_channels, 3, padding=1)
"""


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A folder on sys.path to put plugin modules and installed distributions in; the registry and
    the loader start from the built-in methods and are restored afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if v.source.builtin})
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setenv(plugins.PLUGIN_ENV, "")  # restored afterwards, also when --plugin sets it
    plugins._distributions.cache_clear()
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith("plug_"):
            del sys.modules[name]
    plugins._distributions.cache_clear()


def write_module(site: Path, module: str, name: str, fields: str = "family='3d-net', reference='test'", body: str = "") -> None:
    (site / f"{module}.py").write_text(body or MODULE.format(name=name, fields=fields))


def install(site: Path, distribution: str, version: str, entries: dict[str, str]) -> None:
    """What pip leaves for a distribution with entry points: its dist-info folder."""
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"  # pip's folder name
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{lines}\n")
    (info / "top_level.txt").write_text("\n".join({v.split(":")[0].split(".")[0] for v in entries.values()}) + "\n")


def test_an_installed_distribution_registers_its_methods_without_building_them(plugin_site):
    write_module(plugin_site, "plug_toy", "toy3d")
    install(plugin_site, "sam3d-toy", "1.2.0", {"toy3d": "plug_toy"})
    info = registry.get_method("toy3d")
    assert (info.source.distribution, info.source.version, info.source.module) == ("sam3d-toy", "1.2.0", "plug_toy")
    assert info.source.describe() == "plugin sam3d-toy 1.2.0"
    assert sys.modules["plug_toy"].BUILT == []  # loading imports; nothing is built
    assert registry.get_method("samed").source.builtin


def test_a_named_module_registers_once_and_says_it_is_not_installed(plugin_site, monkeypatch):
    write_module(plugin_site, "plug_named", "named3d")
    monkeypatch.setenv(plugins.PLUGIN_ENV, "plug_named, plug_named")
    assert [m.name for m in registry.list_methods()].count("named3d") == 1
    assert registry.get_method("named3d").source.describe() == "plugin module plug_named (not an installed distribution)"


def test_a_plugin_that_fails_to_import_is_one_warning_and_the_rest_still_works(plugin_site, caplog):
    write_module(plugin_site, "plug_broken", "", body="import a_package_that_is_not_there\n")
    write_module(plugin_site, "plug_fine", "fine3d")
    install(plugin_site, "sam3d-broken", "0.3", {"broken": "plug_broken"})
    install(plugin_site, "sam3d-fine", "0.1", {"fine": "plug_fine"})
    with caplog.at_level(logging.WARNING, logger="sam3d_bench.plugins"):
        names = {m.name for m in registry.list_methods()}
    assert {"fine3d", "samed", "tpmamba"} <= names
    (record,) = caplog.records
    assert "sam3d-broken 0.3" in record.message and "No module named 'a_package_that_is_not_there'" in record.message
    assert "\n" not in record.message


def test_an_install_older_than_the_checkout_says_its_own_entry_points_are_missing(plugin_site, caplog, monkeypatch):
    """nnU-Net v2 registers through this distribution's own entry point; metadata from an older
    install lacks it, and that is said, not left as a method quietly missing from the table."""
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [])
    with caplog.at_level(logging.WARNING, logger="sam3d_bench.plugins"):
        registry.list_methods()
    (record,) = caplog.records
    assert "own entry points are missing" in record.message and "run ./install again" in record.message


def test_a_name_clash_with_a_built_in_is_exit_2_naming_both(plugin_site):
    write_module(plugin_site, "plug_clash", "samed")
    install(plugin_site, "sam3d-clash", "0.1", {"samed": "plug_clash"})
    result = invoke("list")
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "'samed' from plugin sam3d-clash 0.1 clashes with the built-in method 'samed'" in line


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("family='3d-net'", "reference (the paper or repository it reproduces) is required"),
        ("reference='x'", "family must be one of sam-adapter, 3d-net, own pipeline, got None"),
        ("family='3d-net', reference='x', revision=0", "revision must be a whole number from 1, got 0"),
    ],
)
def test_a_method_definition_missing_a_required_field_is_exit_2(plugin_site, fields, message):
    write_module(plugin_site, "plug_bad", "bad3d", fields=fields)
    result = invoke("list", "--plugin", "plug_bad")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: method 'bad3d' from plugin module plug_bad (not an installed distribution) cannot be registered: {message}"
    )


def test_a_named_module_that_does_not_import_is_exit_2(plugin_site):
    result = invoke("list", "--plugin", "plug_nowhere")
    assert result.exit_code == 2
    assert "plugin module 'plug_nowhere'" in result.output and "No module named 'plug_nowhere'" in result.output


def test_list_shows_where_each_method_comes_from(plugin_site):
    import json

    write_module(plugin_site, "plug_listed", "listed3d")
    install(plugin_site, "sam3d-listed", "2.0", {"listed": "plug_listed"})
    rows = {row["name"]: row for row in json.loads(invoke("list", "--json").stdout)}
    assert rows["listed3d"]["source"] == "plugin sam3d-listed 2.0" and rows["listed3d"]["revision"] == 1
    assert rows["tpmamba"]["source"] == "built-in"


def test_plugins_named_after_the_registry_was_read_are_refused(plugin_site):
    registry.list_methods()
    with pytest.raises(plugins.PluginError, match="before the plugins were named"):
        plugins.name_modules(["plug_late"])


def test_a_plugin_method_is_in_the_configuration_and_its_hash(plugin_site, tiny_synthetic, tmp_path):
    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import decide, plan_runs
    from bench.plan.runs import RunRequest

    write_module(plugin_site, "plug_hashed", "hashed3d")
    install(plugin_site, "sam3d-hashed", "0.1", {"hashed": "plug_hashed"})
    request = RunRequest(["hashed3d", "unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs")
    plugin_run, builtin_run = plan_runs(decide(request, Console(quiet=True)), "identity", harness=HARNESS)
    assert plugin_run.config.method_source == {"distribution": "sam3d-hashed", "version": "0.1", "module": "plug_hashed"}
    assert plugin_run.source == "plugin sam3d-hashed 0.1, revision 1"
    assert builtin_run.config.method_source is None and builtin_run.source == ""
    from dataclasses import replace

    newer = replace(plugin_run.config, method_source={**plugin_run.config.method_source, "version": "0.2"})
    assert newer.hash() != plugin_run.hash  # another version of the plugin is another configuration


def test_bench_new_method_writes_a_package_and_refuses_what_it_cannot_write(tmp_path):
    result = invoke("new-method", "lora_x", "--family", "3d-net", "--out", tmp_path / "pkg")
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(tmp_path / "pkg")) for p in (tmp_path / "pkg").rglob("*") if p.is_file())
    assert written == ["README.md", "pyproject.toml", "sam3d_lora_x/__init__.py", "tests/test_lora_x.py"]
    pyproject = (tmp_path / "pkg" / "pyproject.toml").read_text()
    assert '[project.entry-points."sam3d_bench.methods"]\nlora_x = "sam3d_lora_x"' in pyproject
    for args, message in [
        (["lora_x", "--out", tmp_path / "pkg"], "is not an empty folder"),
        (["samed", "--out", tmp_path / "other"], "a method named 'samed' is registered already"),
        (["Bad-Name", "--out", tmp_path / "other"], "must be lower-case letters"),
        (["ok", "--family", "own pipeline", "--out", tmp_path / "other"], "--family must be one of sam-adapter, 3d-net"),
    ]:
        result = invoke("new-method", *args)
        assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sam-adapter", "3d-net"])
def test_a_new_method_package_passes_its_own_tests(tmp_path, family):
    import subprocess

    assert invoke("new-method", "mine", "--family", family, "--out", tmp_path / "mine").exit_code == 0
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path / "mine")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path / "mine",
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert re.search(r"\b4 passed" if family == "sam-adapter" else r"\b3 passed", done.stdout)


@pytest.mark.slow
def test_from_new_method_to_a_report_row(tmp_path, tiny_synthetic):
    """The walk the docs describe: write a package, install it, list it, run it beside SAMed, report."""
    import json
    import os
    import subprocess

    assert invoke("new-method", "adapt3d", "--out", tmp_path / "adapt3d").exit_code == 0
    site = tmp_path / "site"  # installed as pip installs it, into a folder this test owns
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(site),
        str(tmp_path / "adapt3d"),
    ]
    subprocess.run(pip, check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    bench = [sys.executable, "-m", "bench.cli"]
    listed = subprocess.run([*bench, "list", "--json"], env=env, capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["adapt3d"]["source"] == "plugin sam3d-adapt3d 0.1.0" and rows["adapt3d"]["family"] == "sam-adapter"
    out = tmp_path / "runs"
    args = ["run", "--methods", "adapt3d,samed", "--data", "12pct", "--data-root", str(tiny_synthetic), "--out", str(out)]
    done = subprocess.run(
        [*bench, *args, "--profile", "smoke", "--device", "cpu", "--epochs", "1"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "12pct" / "adapt3d" / "repeat0" / "config.json").read_text())
    assert config["method_source"] == {"distribution": "sam3d-adapt3d", "version": "0.1.0", "module": "sam3d_adapt3d"}
    assert config["provenance"]["method_source"] == "plugin sam3d-adapt3d 0.1.0, revision 1"
    assert json.loads((out / "12pct" / "samed" / "repeat0" / "config.json").read_text())["method_source"] is None
    table = (out / "report" / "table1.md").read_text()
    assert "| adapt3d (plugin sam3d-adapt3d 0.1.0, revision 1" in table and "| samed " in table
    assert "plugin sam3d-adapt3d 0.1.0, revision 1" in (out / "report" / "report.html").read_text()
