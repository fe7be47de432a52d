"""The four layers import only downward (docs/design.md, "A map of the code"): the core
(`rir_keras/`) imports nothing of the zoo, the tuner or the commands; the zoo (`applications/`,
installed as `rir_keras.applications`) nothing of the tuner (`tuning/`, `rir_keras.tuning`) or the
commands; the tuner nothing of the commands (`rir_keras/commands/`, on top). Read from the source
with `ast`, every import statement anywhere in a module, so nothing is imported here."""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# folder -> (its package, the packages above it that it must not import)
LAYERS = {
    "rir_keras": ("rir_keras", ("rir_keras.applications", "rir_keras.tuning", "rir_keras.commands")),
    "applications": ("rir_keras.applications", ("rir_keras.tuning", "rir_keras.commands")),
    "tuning": ("rir_keras.tuning", ("rir_keras.commands",)),
}


def imported_modules(path):
    """Every module an import statement of ``path`` names (``from a import b`` gives ``a`` and ``a.b``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_imported_modules_reads_every_form(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import a.b\nfrom c import d\ndef f():\n    from rir_keras import tuning\n")
    assert set(imported_modules(source)) == {"a.b", "c", "c.d", "rir_keras", "rir_keras.tuning"}


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_each_layer_imports_only_downward(folder):
    _, above = LAYERS[folder]
    modules = sorted((REPO / folder).glob("*.py"))
    assert modules, f"no modules in {folder}/"
    upward = [f"{path.relative_to(REPO)} imports {name}" for path in modules
              for name in imported_modules(path) if name.startswith(above)]
    assert upward == []


def imports_in_functions(path):
    """The modules of this package that ``path`` imports inside a function (where an import that
    would close a circle at module level hides)."""
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    yield from (alias.name for alias in node.names if alias.name.startswith("rir_keras"))
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rir_keras"):
                    yield node.module


def test_imports_in_functions_finds_the_hidden_ones(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import rir_keras.data\nimport json\ndef f():\n    import os\n    from rir_keras import runs\n"
                      "class C:\n    def g(self):\n        import rir_keras.training\n")
    assert list(imports_in_functions(source)) == ["rir_keras", "rir_keras.training"]


@pytest.mark.parametrize("folder", sorted(LAYERS) + ["rir_keras/commands"])
def test_no_module_imports_the_package_inside_a_function(folder):
    modules = sorted((REPO / folder).glob("*.py"))
    hidden = [f"{path.relative_to(REPO)} imports {name} in a function" for path in modules
              for name in imports_in_functions(path)]
    assert hidden == []
