"""Guards on the project's boundaries: the client and the ensemble never pull in torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["collat_client", "collat_ensemble"])
def test_light_packages_do_not_import_torch(package):
    code = f"import sys, {package}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_python_backend_code_never_imports_the_client_or_torch():
    code = ("import sys, collat_ensemble.serving.triton_models, collat_ensemble.phantom; "
            "print(sorted(m for m in ('torch', 'collat_client', 'collat_export') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
