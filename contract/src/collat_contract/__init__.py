"""collat_contract: the vocabulary the client and the server side share, and nothing else.

Both sides import it and neither imports the other: the client never imports server code
and the Python-backend steps never import the client. It holds the tensor specification
(:mod:`.tensors`), the names of phases, networks, steps and pipelines (:mod:`.names`), the
rules a request's clinical inputs must satisfy and the core's ADC threshold (:mod:`.clinical`),
the sizes a request must respect (:mod:`.limits`) and the keys of the METRICS document
(:mod:`.metrics`). Standard library only, so it installs everywhere the other packages do, the
NGC serving image included.
"""

__version__ = "0.1.0"
