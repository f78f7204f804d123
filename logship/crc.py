"""CRC-32C (Castagnoli), from the crc32c package's extension module.

The package's __init__ imports importlib.metadata to read its own version, about 25 ms of
every command's start-up, so the extension is loaded from the package's directory without
running __init__; if that fails for any reason, the package is imported as usual.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os

__all__ = ["crc32c"]


def _load_crc32c():
    try:
        package = importlib.util.find_spec("crc32c")
        folder = package.submodule_search_locations[0]
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_crc32c" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                module = importlib.util.module_from_spec(
                    importlib.util.spec_from_file_location("crc32c._crc32c", path, loader=loader))
                loader.exec_module(module)
                return module.crc32c
    except Exception:  # noqa: BLE001 - any surprise: the ordinary import below
        pass
    import crc32c as package_module

    return package_module.crc32c


crc32c = _load_crc32c()
"""crc32c(data, value=0) -> int: the CRC-32C of a bytes-like object, continuing from `value`."""
