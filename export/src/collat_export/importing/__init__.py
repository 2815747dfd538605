"""Networks trained elsewhere, served as the built-in ones: a card describes them, an ONNX wrapper adapts them."""

from .adapter import NetworkImportError
from .network import ImportedNetwork, import_network, read_card

__all__ = ["ImportedNetwork", "NetworkImportError", "import_network", "read_card"]
