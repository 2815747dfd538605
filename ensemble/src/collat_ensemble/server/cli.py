"""``collat-server``: run the real tritonserver on a model repository, or the phantom demo through it.

Failures end with one line on stderr and a non-zero exit code, never a traceback. The model
repository itself is written by ``collat-export repository`` (it exports the networks, which
needs PyTorch); nothing here does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .launcher import ServerError, TritonServer, serve_forever

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Start the stroke-MRI serving stack (tritonserver with the project's safe flags).

    \b
    Example:
      collat-server serve --repository build/model_repository
      collat-server demo --repository build/model_repository --out demo-output
    """


@main.command()
@click.option("--repository", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Loopback by default; 0.0.0.0 exposes the server to the network.")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--log-file", type=click.Path(path_type=Path), default=None)
def serve(repository: Path, host: str, http_port: int, grpc_port: int, metrics_port: int,
          log_file: Path | None) -> None:
    """Run tritonserver (the nvidia-pytriton build, CPU) on a model repository until Ctrl-C.

    \b
    Example:
      collat-server serve --repository build/model_repository
    """
    if host not in LOOPBACK:
        click.echo(f"warning: binding to {host}: the server is reachable from the network and has no "
                   "authentication; put TLS and access control in front of it (SECURITY.md)", err=True)
    server = TritonServer(repository, host=host, http_port=http_port, grpc_port=grpc_port,
                          metrics_port=metrics_port, log_file=log_file)
    try:
        code = serve_forever(server, echo=lambda m: click.echo(m, err=True))
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.option("--repository", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True)
@click.option("--seed", type=int, default=101, show_default=True)
def demo(repository: Path, out: Path, seed: int) -> None:
    """Start tritonserver, run a phantom case through stroke_triage with collat-client, stop the server.

    \b
    Example:
      collat-server demo --repository build/model_repository --out demo-output
    """
    from .demo import run_demo

    try:
        out.mkdir(parents=True, exist_ok=True)
        code = run_demo(repository, out, seed=seed, echo=lambda m: click.echo(m, err=True))
    except (ServerError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
