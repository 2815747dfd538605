"""``collat-client``: run a scan through the server, check the server, score outputs against references.

Exit codes: 0 ok, 2 bad input or usage, 3 server unavailable or pipeline not ready,
4 server-side error or timeout,
5 a DICOM peer (PACS) unreachable or refusing. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import click

from collat_contract.names import NETWORKS, PIPELINE_NAMES

from ..errors import CollatError, InputFileError, InvalidInput, ModelNotReady, PeerError

URL_HELP = "server address host:port (env COLLAT_URL; gRPC port for --protocol grpc)"


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        try:
            return func(*args, **kwargs)
        except CollatError as exc:
            _fail(str(exc), exc.exit_code)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first.get("ctx", {}).get("error", first["msg"]))  # a shared rule's own words
            _fail(f"{where}: {message}" if where else message, 2)
        except FileExistsError as exc:
            _fail(str(exc), 2)
        except OSError as exc:
            _fail(f"{getattr(exc, 'filename', None) or ''}: {exc.strerror or exc}", 2)

    return wrapper


def _client(url: str, protocol: str, timeout: float, retries: int):
    from ..sdk.client import CollatClient

    return CollatClient(url, protocol=protocol, timeout=timeout, retries=retries)


def _default_url(protocol: str) -> str:
    import os

    return os.environ.get("COLLAT_URL") or ("127.0.0.1:8001" if protocol == "grpc" else "127.0.0.1:8000")


def _print_table(metrics, console) -> None:
    from rich.table import Table

    table = Table(title=f"{metrics.pipeline}", show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    flags = set(metrics.near_threshold)

    def row(name: str, value: str, flag: str | None = None) -> None:
        table.add_row(name, value + ("  (near threshold)" if flag in flags else ""))

    if metrics.hypoperfusion is not None:
        h = metrics.hypoperfusion
        row("ADC core", f"{h.core_ml:.1f} mL", "defuse3.core_ml")
        rule = h.lesion_rule
        if h.lesion_reported:
            row("hypoperfusion", f"{h.hypoperfusion_ml:.1f} mL" + (
                f" (volume-calibrated; network {rule.network_ml:.1f} mL)" if rule.calibrated else ""))
            row("mismatch volume", f"{h.mismatch_ml:.1f} mL", "defuse3.mismatch_ml")
            row("mismatch ratio", f"{h.mismatch_ratio:.2f}" + (" (capped)" if h.mismatch_ratio_capped else ""),
                "defuse3.mismatch_ratio")
        else:  # never a number for a lesion that is not one: the reason, and what the masks hold
            withheld = h.lesion_withheld
            row("hypoperfusion", "NOT ASSESSED" if withheld and withheld.status == "not_run" else "WITHHELD")
            for reason in withheld.reasons if withheld else []:
                row("  why", reason)
            if withheld and withheld.drawn_ml is not None:
                row("  lesion_mask.nii.gz", f"holds the withheld {withheld.drawn_ml:.1f} mL, for inspection only")
        row("DEFUSE 3 target mismatch", "WITHHELD" if h.defuse3 is None else "yes" if h.defuse3.eligible else "no")
        dawn = "WITHHELD" if metrics.quality.withheld("dawn") else "n/a (no age)" if h.dawn is None else (
            "yes (" + ",".join(g for g, v in h.dawn.groups.items() if v) + ")" if h.dawn.eligible else "no")
        row("DAWN clinical-core mismatch", dawn, "dawn.core_ml")
        row("DWI to MNI", h.registration.method.replace("_", " ") + f" (brain overlap {h.registration.similarity:.2f})")
        row("stroke side", h.side + (" (inferred)" if h.side_inferred else ""))
    if metrics.collateral is not None:
        c = metrics.collateral
        row("contrast bolus", f"{c.contrast.kind} (brain signal {c.contrast.signal_change:+.0%})")
        if c.cps_estimate is None:
            row("CPS estimate", f"WITHHELD: {c.cps_withheld}")
        else:
            row("CPS estimate", f"{c.cps_estimate} ({c.cps_label}), {c.ischaemic_side} side")
        for phase, fraction in (c.hypoperfused_fraction or {}).items():
            row(f"hypoperfused {phase.replace('_', ' ')}", f"{fraction:.0%}")
    console.print(table)
    for warning in metrics.warnings:
        console.print(f"[yellow]note:[/yellow] {warning}")
    for check in metrics.quality.checks:
        if check.verdict == "unknown":
            console.print(f"[yellow]not checked:[/yellow] {check.reason}")
    for reason in metrics.quality.decisions_withheld:
        console.print(f"[bold red]decision withheld:[/bold red] [red]{reason}[/red]")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Client for the stroke-MRI collateral and hypoperfusion server.

    \b
    Example:
      collat-client infer perfusion.nii.gz --dwi dwi.nii.gz --adc adc.nii.gz --nihss 14 --age 70 --side left
    """


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--retries", type=int, default=3, show_default=True)(func)
    func = click.option("--timeout", type=float, default=300.0, show_default=True, help="seconds per request")(func)
    func = click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True)(func)
    return click.option("--url", default=None, help=URL_HELP)(func)


def _default_out(scan: Path | None, dwi: Path | None) -> Path:
    base = scan or dwi
    name = base.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return base.parent / f"{name}_collat"


def _print_study(study, console) -> None:
    from rich.table import Table

    table = Table(title=f"DICOM study {study.folder}", show_header=True)
    for column in ("series", "shape", "role", "outcome", "reason"):
        table.add_column(column)
    for row in study.table():
        outcome = str(row["outcome"])
        style = "green" if outcome.startswith("chosen") else "dim"
        table.add_row(str(row["series"]), str(row["shape"]), str(row["role"]), f"[{style}]{outcome}[/{style}]",
                      str(row["reason"]))
    console.print(table)


@main.command()
@click.argument("scan", required=False, type=click.Path(path_type=Path))
@click.option("--dwi", type=click.Path(path_type=Path), help="DWI b=1000, native or MNI space (NIfTI or DICOM dir)")
@click.option("--adc", type=click.Path(path_type=Path), help="ADC on the DWI grid (NIfTI or DICOM dir)")
@click.option("--nihss", type=int, help="NIHSS 0-42 (needed with --dwi/--adc, or a study holding a DWI)")
@click.option("--age", type=float, help="age in years (DAWN needs it)")
@click.option("--side", default="unknown", show_default=True, help="left, right, bilateral or unknown")
@click.option("--b-value", "b_value", type=float, help="the DWI's b-value in s/mm^2 when its file does not say "
              "(NIfTI); read from the header for DICOM")
@click.option("--perfusion-series", help="in a DICOM study: the perfusion series (number or SeriesInstanceUID), "
              "or 'none' to run its diffusion series alone")
@click.option("--dwi-series", help="in a DICOM study: the DWI series (number or SeriesInstanceUID)")
@click.option("--adc-series", help="in a DICOM study: the ADC series (number or SeriesInstanceUID)")
@click.option("--allow-b-value", is_flag=True, help="run a DWI whose b-value is not about 1000 s/mm^2 "
              "(its decisions are withheld)")
@click.option("--out", type=click.Path(path_type=Path), help="output folder (default: <scan>_collat beside the scan)")
@click.option("--dicom-out", type=click.Path(path_type=Path, file_okay=False),
              help="also write DICOM for PACS here (SEG of the lesion and core, TID 1500 report, colour captures of "
                   "the maps and a summary; needs DICOM input and the dicom extra)")
@click.option("--to", "send_to", help="send the DICOM results to PACS: AE@HOST:PORT (C-STORE) or a DICOMweb URL "
              "(STOW-RS); writes them to --dicom-out, or <out>/dicom")
@click.option("--calling-ae", default="COLLAT", show_default=True, help="our AE title when sending")
@click.option("--force", is_flag=True, help="overwrite existing outputs")
@click.option("--json", "as_json", is_flag=True, help="print the metrics document only")
@click.option("--model-version", help="run one network at one of its loaded versions: NETWORK=VERSION, e.g. "
              "hypoperfusion_unet=1 (collat-client models lists them)")
@_common
@clean_errors
def infer(**options: Any) -> None:
    """Run a perfusion series or a DICOM study folder (SCAN) and/or DWI + ADC through the server; write maps,
    metrics and a PNG.

    \b
    SCAN may be a NIfTI file, or a folder of DICOM at any depth (a PACS export, a whole study):
    its series are classified (perfusion, DWI, ADC, other) and the choice is printed.

    \b
    Example:
      collat-client infer scan.nii.gz --out results/
      collat-client infer STUDY_DIR --nihss 14 --age 70 --side left
      collat-client infer STUDY_DIR --nihss 14 --age 70 --side left --to PACS@10.0.0.5:104
      collat-client infer --dwi dwi.nii.gz --adc adc.nii.gz --nihss 14 --age 70 --side left --json
    """
    from rich.console import Console

    o = InferOptions(**options)
    console = Console(stderr=True)
    if o.send_to is not None:
        from ..dicom.network import check_destination

        check_destination(o.send_to)
    plan = _plan(o, on_study=None if o.as_json else lambda study: _print_study(study, console))
    out = o.out or _default_out(o.scan, o.dwi)
    dicom_out = out / "dicom" if o.send_to is not None and o.dicom_out is None else o.dicom_out
    clashes = [n for n in plan.output_files if (out / n).exists()]
    if clashes and not o.force:
        raise FileExistsError(f"{out}: would overwrite {', '.join(clashes[:3])} (use --force)")
    spinner = console.status("starting", spinner="dots") if console.is_terminal and not o.as_json else _Quiet()
    with _client(o.url or _default_url(o.protocol), o.protocol, o.timeout, o.retries) as client, spinner as s:
        result = _run(client, plan, s.update)
        s.update("writing")
        written = result.save(out, overwrite=o.force)
        if dicom_out is not None:
            written += _save_dicom(result, dicom_out, o, console, s.update)
    if o.as_json:
        click.echo(json.dumps(result.metrics.model_dump(mode="json"), indent=2))
        return
    _print_table(result.metrics, Console())
    click.echo(f"inference {result.seconds:.1f} s; wrote {len(written)} files to {out}")
    _warn_withheld(result.metrics.quality)


@dataclass(frozen=True)
class InferOptions:
    """``collat-client infer``'s options, as click parses them."""

    scan: Path | None
    dwi: Path | None
    adc: Path | None
    nihss: int | None
    age: float | None
    side: str
    b_value: float | None
    perfusion_series: str | None
    dwi_series: str | None
    adc_series: str | None
    allow_b_value: bool
    out: Path | None
    dicom_out: Path | None
    send_to: str | None
    calling_ae: str
    force: bool
    as_json: bool
    model_version: str | None
    url: str | None
    protocol: str
    timeout: float
    retries: int


def _clinical(o: InferOptions):
    """The clinical inputs the options give; the NIHSS is required as soon as diffusion images are named."""
    from ..schema import Clinical

    if o.nihss is None and o.dwi is None and o.adc is None:
        return None
    if o.nihss is None:
        raise InvalidInput("--nihss is required with --dwi/--adc")
    return Clinical(nihss=o.nihss, age=o.age, side=o.side, dwi_b_value=o.b_value)


def _plan(o: InferOptions, on_study):
    """SCAN is a perfusion file or a study folder: the shared request plan takes it from there."""
    from ..sdk.plan import plan_request

    if o.scan is None and o.dwi is None:
        raise InvalidInput("give a perfusion SCAN or a study folder, or --dwi and --adc, or all three")
    folder = o.scan is not None and o.scan.is_dir()
    return plan_request(perfusion=None if folder else o.scan, study=o.scan if folder else None, dwi=o.dwi,
                        adc=o.adc, clinical=_clinical(o), perfusion_series=o.perfusion_series,
                        dwi_series=o.dwi_series, adc_series=o.adc_series, allow_b_value=o.allow_b_value,
                        on_study=on_study, model_version=_model_version(o.model_version))


def _model_version(text: str | None) -> dict[str, str] | None:
    """``NETWORK=VERSION`` -> ``{NETWORK: VERSION}``."""
    if text is None:
        return None
    network, sep, version = text.partition("=")
    if not sep or not network or not version:
        raise InvalidInput(f"--model-version {text!r}: give NETWORK=VERSION, e.g. hypoperfusion_unet=1")
    return {network: version}


def _run(client, plan, progress: Callable[[str], None]):
    """The plan through the server; a refusal of a study's perfusion series says how to run its diffusion alone."""
    try:
        return client.run(plan, progress=progress)
    except InvalidInput as exc:
        study = plan.study
        if study is None or study.perfusion is None or study.dwi is None:
            raise
        raise InvalidInput(f"{exc} (the study's {study.perfusion.label} was taken as its perfusion series: "
                           "--perfusion-series none runs its diffusion series alone)") from None


def _save_dicom(result, folder: Path, o: InferOptions, console, progress: Callable[[str], None]) -> list[Path]:
    dicom = result.save_dicom(folder, overwrite=o.force)
    for note in dicom.notes:
        console.print(f"[yellow]DICOM:[/yellow] {note}")
    if o.send_to is not None:
        progress(f"sending to {o.send_to}")
        _send(dicom.files, o.send_to, o.calling_ae, folder, console)
    return dicom.files


def _warn_withheld(quality) -> None:
    """Maps written, decisions not: exit 0, but say so on stderr."""
    if quality.decisions_withheld:
        names = [n for d, n in (("defuse3", "DEFUSE 3"), ("dawn", "DAWN")) if quality.withheld(d)]
        click.echo(f"warning: {len(quality.decisions_withheld)} quality check(s) failed; {' and '.join(names)} "
                   f"decision{'s' if len(names) > 1 else ''} withheld (see metrics.json quality)", err=True)


def _send(files: list[Path], send_to: str, calling_ae: str, folder: Path, console) -> None:
    from ..dicom.network import send

    try:
        count = send(files, send_to, calling_ae=calling_ae)
    except PeerError as exc:
        raise PeerError(f"{exc}; the results are kept in {folder} (send them again: collat-client send {folder} "
                        f"--to {send_to})") from None
    console.print(f"sent {count} DICOM objects to {send_to}")


class _Quiet:
    """Stands in for the progress spinner when output is not a terminal."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, message: str) -> None:
        return None


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "send_to", required=True, help="AE@HOST:PORT (C-STORE) or an http(s):// DICOMweb URL (STOW-RS)")
@click.option("--calling-ae", default="COLLAT", show_default=True, help="our AE title")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="seconds per network step")
@clean_errors
def send(paths: tuple[Path, ...], send_to: str, calling_ae: str, timeout: float) -> None:
    """Send DICOM results (files, or folders of *.dcm) to PACS.

    \b
    Example:
      collat-client send results/dicom --to PACS@10.0.0.5:104
      collat-client send results/dicom --to https://pacs.example.org/dicom-web
    """
    from ..dicom.network import check_destination, dicom_files
    from ..dicom.network import send as send_files

    check_destination(send_to)
    files = dicom_files(list(paths))
    count = send_files(files, send_to, calling_ae=calling_ae, timeout=timeout)
    click.echo(f"sent {count} DICOM objects to {send_to}")


@main.command()
@click.option("--port", type=int, default=11112, show_default=True, help="port to listen on")
@click.option("--ae-title", default="COLLAT", show_default=True, help="the node's AE title")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (0.0.0.0: every interface)")
@click.option("--send-to", required=True, help="where results go: AE@HOST:PORT or a DICOMweb URL")
@click.option("--work", type=click.Path(path_type=Path, file_okay=False),
              help="work folder: the durable queue of received studies [default: $XDG_STATE_HOME/collat/node, "
                   "i.e. ~/.local/state/collat/node]")
@click.option("--allow-ae", "allowed", multiple=True, help="accept only these calling AE titles (repeatable)")
@click.option("--quiet", "quiet_seconds", type=float, default=10.0, show_default=True,
              help="seconds without a new instance after which a study is complete")
@click.option("--nihss", type=int, help="NIHSS assumed when a study has no clinical file (see the README)")
@click.option("--age", type=float, help="age assumed with --nihss")
@click.option("--no-failure-reports", is_flag=True, help="do not send a 'no result' page for a failed study")
@click.option("--retry", "retry_seconds", type=float, default=5.0, show_default=True,
              help="first retry delay in seconds when the server or the destination is down (doubles per attempt)")
@click.option("--retry-max", "retry_max_seconds", type=float, default=300.0, show_default=True,
              help="longest retry delay in seconds")
@click.option("--url", default=None, help=URL_HELP)
@click.option("--web-port", type=int, help="serve the stroke team's page, /healthz and /metrics on this port "
                                           "(the web extra); the NIHSS is then entered there for each study")
@click.option("--web-host", default="127.0.0.1", show_default=True,
              help="address the page binds (beyond loopback only with --web-users)")
@click.option("--web-users", type=click.Path(path_type=Path, dir_okay=False),
              help="users who may sign in (collat-client web-user writes it); without it, a one-off access token "
                   "is printed at start")
@click.option("--web-session-minutes", type=float, default=15.0, show_default=True,
              help="a session ends after this long without a request")
@click.option("--web-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="TLS certificate (PEM) for the page; with --web-key")
@click.option("--web-key", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="its private key")
@clean_errors
def listen(port: int, ae_title: str, host: str, send_to: str, work: Path | None, allowed: tuple[str, ...],
           quiet_seconds: float, nihss: int | None, age: float | None, no_failure_reports: bool,
           retry_seconds: float, retry_max_seconds: float, url: str | None, web_port: int | None, web_host: str,
           web_users: Path | None, web_session_minutes: float, web_cert: Path | None, web_key: Path | None) -> None:
    """Run a DICOM node: receive studies (C-STORE), run each through the server, send the results on.

    \b
    Example:
      collat-client listen --port 11112 --ae-title COLLAT --send-to PACS@10.0.0.5:104 --work /var/lib/collat
      collat-client listen --send-to PACS@10.0.0.5:104 --web-port 8080      # with the stroke team's page
    """
    import logging
    import signal

    from ..dicom.network import check_destination
    from .node import Node, NodeConfig, default_work_folder

    check_destination(send_to)
    if (web_cert is None) != (web_key is None):
        raise InvalidInput("--web-cert and --web-key go together")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for name in ("collat.node", "collat.audit"):  # the node's own story; libraries only when they warn
        logging.getLogger(name).setLevel(logging.INFO)
    config = NodeConfig(work=work or default_work_folder(), send_to=send_to, server_url=url or _default_url("http"),
                        ae_title=ae_title, host=host, port=port, allowed_callers=allowed,
                        quiet_seconds=quiet_seconds, nihss=nihss, age=age, report_failures=not no_failure_reports,
                        retry_seconds=retry_seconds, retry_max_seconds=retry_max_seconds,
                        ask_clinical=web_port is not None and nihss is None, keep_views=web_port is not None)
    page = None
    if web_port is None:
        node = Node(config)
    else:
        node, page = _node_with_page(config, web_host, web_port, web_users, web_session_minutes, web_cert, web_key)
    signal.signal(signal.SIGTERM, lambda *_: node.stop())
    try:
        node.serve_forever()
    except KeyboardInterrupt:
        node.stop()
    finally:
        if page is not None:
            page.stop()


def _node_with_page(config, web_host: str, web_port: int, users: Path | None, session_minutes: float,
                    cert: Path | None, key: Path | None):
    """The node with its page started (refused beyond loopback without users: patients' names are on it)."""
    import logging
    import secrets

    try:
        from .web.app import WebConfig
        from .web.auth import Credentials, read_users
        from .web.metrics import PrometheusObserver
        from .web.server import WebServer
    except ImportError as exc:
        raise InvalidInput(f"--web-port needs the web extra (pip install 'collat-client[web]'): {exc}") from None
    from .node import Node
    from .web.views import queue_depths

    try:
        credentials = Credentials(users=read_users(users)) if users is not None else \
            Credentials(token=secrets.token_urlsafe(24))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{users}: {exc}" if isinstance(exc, OSError) else str(exc)) from None
    holder: list[Node] = []
    observer = PrometheusObserver(lambda: queue_depths(holder[0]))
    node = Node(config, observer=observer)
    holder.append(node)
    scheme = "https" if cert is not None else "http"
    page = WebServer(node, WebConfig(host=web_host, port=web_port, credentials=credentials,
                                     session_minutes=session_minutes, tls=cert is not None),
                     certfile=str(cert) if cert else None, keyfile=str(key) if key else None).start()
    log = logging.getLogger("collat.node")
    log.info("the stroke team's page: %s://%s:%d/", scheme, web_host, web_port)
    if credentials.token is not None:
        token_file = config.work / "web-token"
        config.work.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(credentials.token + "\n")
        log.info("sign in with any user name and the access token in %s (valid until the node stops)", token_file)
    return node, page


@main.command("web-user")
@click.argument("name")
@click.option("--users", "users_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="the users file the node reads (--web-users); created if missing")
@click.password_option(help="the password (asked twice when not given)")
@clean_errors
def web_user(name: str, users_file: Path, password: str) -> None:
    """Add a user to the node's page, or change their password (stored as a scrypt hash, file mode 600).

    \b
    Example:
      collat-client web-user alice --users /var/lib/collat/web-users
    """
    from .web.auth import write_user

    if len(password) < 12:
        raise InvalidInput("a password for a page that shows patients' names needs at least 12 characters")
    try:
        write_user(users_file, name, password)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    click.echo(f"{users_file}: {name} can sign in")


@main.command()
@_common
@clean_errors
def health(url: str | None, protocol: str, timeout: float, retries: int) -> None:
    """Is the server up, and is each pipeline ready? Exit 0 only when everything is.

    \b
    Example:
      collat-client health --url 127.0.0.1:8000
    """
    with _client(url or _default_url(protocol), protocol, timeout, retries) as client:
        client.server_ready()
        states = {name: client.model_ready(name) for name in PIPELINE_NAMES}
    for name, ready in states.items():
        click.echo(f"{name}: {'ready' if ready else 'NOT READY'}")
    if not all(states.values()):
        raise ModelNotReady("not every pipeline is ready")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@_common
@clean_errors
def models(as_json: bool, url: str | None, protocol: str, timeout: float, retries: int) -> None:
    """Pipelines and networks: version, ready state, and the networks' batching and instances.

    \b
    Example:
      collat-client models --json
    """
    rows = []
    with _client(url or _default_url(protocol), protocol, timeout, retries) as client:
        for name in PIPELINE_NAMES + NETWORKS:
            config = client.model_config(name)
            row = {"name": name, "ready": client.model_ready(name),
                   "platform": config.get("platform") or config.get("backend", "")}
            if name in NETWORKS:
                batching = config.get("dynamic_batching")
                row.update(max_batch_size=int(config.get("max_batch_size", 0)),
                           dynamic_batching=batching is not None,
                           preferred_batch_size=[int(b) for b in (batching or {}).get("preferred_batch_size", [])],
                           instances=sum(int(g.get("count", 1)) for g in config.get("instance_group", [])),
                           versions=_network_versions(client, name))
            rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        extra = "" if "max_batch_size" not in r else (
            f"  max batch {r['max_batch_size']}, dynamic batching {'on' if r['dynamic_batching'] else 'off'} "
            f"{r['preferred_batch_size']}, {r['instances']} instance(s)")
        click.echo(f"{r['name']:<24} {'ready' if r['ready'] else 'NOT READY':<10} {r['platform']}{extra}")
        for v in r.get("versions", []):
            click.echo(f"  version {v['version']:<4} {'ready' if v['ready'] else 'NOT READY':<10} "
                       f"{'served  ' if v['served'] else '        '}{v['provenance']}")


def _network_versions(client, name: str) -> list[dict[str, Any]]:
    """Each loaded version of a network: ready, served by the pipelines or not, and its provenance (preset, weights
    digest, card digest), as the repository builder recorded them for the step that reads the cards."""
    from collat_contract.names import CARD_READERS  # each card-reading step is told the versions' provenance

    params = {k: v.get("string_value", "") for k, v in client.model_config(CARD_READERS[name][0])
              .get("parameters", {}).items()}
    served = params.get("network_version", "1")
    provenance = dict(part.strip().split(": ", 1) for part in params.get("network_versions", "").split(";")
                      if ": " in part)
    return [{"version": v, "ready": client.model_ready(name, v), "served": v == served,
             "provenance": provenance.get(v, "")} for v in client.model_versions(name)]


def _first(folder: Path, *names: str) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _grade_against_truth(metrics_path: Path, truth_path: Path) -> dict[str, Any] | None:
    """The served CPS estimate beside the phantom's grade, when both files are there."""
    if not (metrics_path.is_file() and truth_path.is_file()):
        return None
    try:
        collateral = json.loads(metrics_path.read_text()).get("collateral")
        truth = json.loads(truth_path.read_text()).get("collateral_grade")
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{metrics_path} or {truth_path}: not readable JSON ({exc})") from None
    if collateral is None or truth is None:
        return None
    return {"estimate": collateral.get("cps_estimate"), "truth": truth, "withheld": collateral.get("cps_withheld")}


@main.command()
@click.argument("pred_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("ref_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def evaluate(pred_dir: Path, ref_dir: Path, as_json: bool) -> None:
    """Score outputs (from `infer`) against references, with the studies' metrics.

    PRED_DIR holds collateral_maps.nii.gz / hypoperfusion_prob.nii.gz + lesion_mask.nii.gz;
    REF_DIR holds truth_maps.nii.gz + truth_brain.nii.gz and/or truth_lesion.nii.gz (as
    collat-phantom writes them). Maps: per-phase R^2, MAE, Tanimoto, SSIM inside the
    reference brain. Lesion: Dice, AUC, volume difference and absolute volume difference.

    \b
    Example:
      collat-client evaluate case_collat/ case/
    """
    import numpy as np

    from ..imaging.evaluation import auc, dice, phase_metrics, volume_difference_ml
    from ..imaging.volumes import load_nifti

    for folder in (pred_dir, ref_dir):
        if not folder.is_dir():
            raise InputFileError(f"{folder}: no such directory")
    report: dict[str, Any] = {}
    pred_maps, ref_maps = _first(pred_dir, "collateral_maps.nii.gz"), _first(ref_dir, "truth_maps.nii.gz")
    if pred_maps and ref_maps:
        brain = _first(ref_dir, "truth_brain.nii.gz") or _first(pred_dir, "brain_mask.nii.gz")
        p, r = load_nifti(pred_maps)[0], load_nifti(ref_maps)[0]
        if p.shape != r.shape:
            raise InvalidInput(f"{pred_maps} {p.shape} and {ref_maps} {r.shape} are not on one grid")
        mask = load_nifti(brain)[0].astype(bool) if brain else None
        report["collateral"] = phase_metrics(p.astype(float), r.astype(float), mask)
    pred_prob, pred_lesion = _first(pred_dir, "hypoperfusion_prob.nii.gz"), _first(pred_dir, "lesion_mask.nii.gz")
    ref_lesion = _first(ref_dir, "truth_lesion.nii.gz")
    if pred_prob and pred_lesion and ref_lesion:
        prob, affine, _ = load_nifti(pred_prob)
        truth = load_nifti(ref_lesion)[0].astype(bool)
        lesion = load_nifti(pred_lesion)[0].astype(bool)  # the server's lesion: one rule, defined server-side
        if not prob.shape == lesion.shape == truth.shape:
            raise InvalidInput(f"{pred_prob} {prob.shape}, {pred_lesion} {lesion.shape} and {ref_lesion} "
                               f"{truth.shape} are not on one grid")
        voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
        vd, avd = volume_difference_ml(lesion, truth, voxel_ml)
        report["hypoperfusion"] = {"dice": dice(lesion, truth), "auc": auc(prob, truth),
                                   "volume_difference_ml": vd, "abs_volume_difference_ml": avd}
    grade = _grade_against_truth(pred_dir / "metrics.json", ref_dir / "truth.json")
    if grade is not None:
        report["cps"] = grade
    if not report:
        raise InputFileError(f"nothing to compare: no matching outputs in {pred_dir} and references in {ref_dir}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "collateral" in report:
        table = Table(title="collateral maps")
        for col in ("phase", "R^2", "MAE", "Tanimoto", "SSIM"):
            table.add_column(col, justify="right" if col != "phase" else "left")
        for phase, m in report["collateral"].items():
            table.add_row(phase, f"{m['r2']:.3f}", f"{m['mae']:.3f}", f"{m['tanimoto']:.3f}", f"{m['ssim']:.3f}")
        console.print(table)
    if "cps" in report:
        g = report["cps"]
        console.print(f"CPS: estimate {g['estimate'] if g['estimate'] is not None else 'withheld'}, phantom grade "
                      f"{g['truth']}")
    if "hypoperfusion" in report:
        h = report["hypoperfusion"]
        console.print(f"hypoperfusion: Dice {h['dice']:.3f}  AUC {h['auc']:.3f}  volume difference "
                      f"{h['volume_difference_ml']:.1f} mL (absolute {h['abs_volume_difference_ml']:.1f} mL)")


if __name__ == "__main__":  # pragma: no cover
    main()
