"""The package layout is the architecture: the pure core imports no adapter, the CLI's help none either."""

from __future__ import annotations

import subprocess
import sys

import pytest

ADAPTER_LIBRARIES = ("aiomysql", "pymysql", "aioboto3", "aiobotocore", "botocore", "aio_pika", "aiormq", "sqlite3")
#: The package's own adapters (the storage backends and the hash cache): the core imports none of them.
ADAPTER_MODULES = ("nacento_sync.storage", "nacento_sync.filestore", "nacento_sync.hashcache", "nacento_sync.magento")
CORE = ("nacento_sync.models", "nacento_sync.paths", "nacento_sync.plan", "nacento_sync.storeviews",
        "nacento_sync.charset", "nacento_sync.purge", "nacento_sync.codes", "nacento_sync.results",
        "nacento_sync.etags", "nacento_sync.asyncmode.decisions", "nacento_sync.doctor", "nacento_sync.grants",
        "nacento_sync.retry", "nacento_sync.journal", "nacento_sync.undo", "nacento_sync.rowsim")


def _imported_after(code: str, whole: bool = False) -> set[str]:
    names = "m" if whole else "m.split('.')[0]"
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted({{{names} for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("module", CORE)
def test_the_pure_core_imports_no_adapter_library(module):
    assert _imported_after(f"import {module}") & set(ADAPTER_LIBRARIES) == set()
    assert _imported_after(f"import {module}", whole=True) & set(ADAPTER_MODULES) == set()


@pytest.mark.parametrize("argv", [["--help"], ["sync", "--help"], ["status", "--help"], ["schema", "--help"],
                                  ["doctor", "--help"], ["--version"]])
def test_help_imports_no_adapter_library(argv):
    code = (f"import sys; sys.argv = ['nacento-sync', *{argv!r}]\nfrom nacento_sync.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    assert _imported_after(code) & set(ADAPTER_LIBRARIES) == set()


#: What `import nacento_sync.cli` leaves for the commands to import when they run (`--help` starts fast).
CLI_DEFERRED_LIBRARIES = ("pydantic", "yaml", "asyncio", "aiomysql", "aioboto3", "aio_pika")
CLI_DEFERRED_MODULES = ("rich.progress", "rich.table", "rich.logging", "nacento_sync.config", "nacento_sync.plan",
                        "nacento_sync.feed", "nacento_sync.report", "nacento_sync.doctor", "nacento_sync.results")


def test_importing_the_cli_defers_config_pydantic_asyncio_and_progress():
    assert _imported_after("import nacento_sync.cli") & set(CLI_DEFERRED_LIBRARIES) == set()
    assert _imported_after("import nacento_sync.cli", whole=True) & set(CLI_DEFERRED_MODULES) == set()


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_top_level_help_and_version_import_no_config(argv):
    code = (f"import sys; sys.argv = ['nacento-sync', *{argv!r}]\nfrom nacento_sync.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    assert _imported_after(code) & {"pydantic", "yaml", "asyncio"} == set()
    assert _imported_after(code, whole=True) & {"nacento_sync.config", "nacento_sync.plan", "rich.progress"} == set()
