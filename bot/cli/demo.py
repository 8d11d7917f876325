"""`steward demo` (registered in bot/cli/main.py): everything local, one command.

An IAM sandbox (moto) seeded with a messy two-account organisation, the local Slack fake,
SQLite in a temporary directory and Steward's own HTTP app; last-accessed data stored for
the least-privilege showcase; one scan and one routing cycle; a risky change taken from an
SQS queue by the activity intake ("Did you do this?"); then a web page that shows the
workspace as each person sees it. Nothing leaves the machine: no AWS account, no Slack
workspace, no database server (see sandbox/demo.py).
"""

from __future__ import annotations

import signal
import threading

import typer

from bot.cli.common import err, fail, out


def demo(
    port: int = typer.Option(
        8000, "--port", "-p", min=0, max=65535, help="Port of the demo page (0: any free port)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address of the demo page (keep it on loopback)."
    ),
    browser: bool = typer.Option(
        True, "--browser/--no-browser", help="Open the page in a web browser."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of the generated organisation (default: the documented one)."
    ),
):
    """Run IAM Steward locally against sandboxes of AWS IAM and Slack, with a web page."""
    try:
        from sandbox import demo_data
        from sandbox.demo import Demo, DemoError
    except ModuleNotFoundError as exc:
        if exc.name not in {"sandbox", "moto"} and not (exc.name or "").startswith(("sandbox.", "moto.")):
            raise
        # The production image leaves the sandbox and moto out (Dockerfile).
        raise fail("the demo is not part of this installation: pip install 'iam-steward[demo]' from a source checkout") from None

    _check_host(host)
    stop = threading.Event()
    instance = Demo(host=host, port=port, seed=demo_data.DEFAULT_SEED if seed is None else seed)
    try:
        instance.start(progress=lambda message: err.print(f"[dim]…[/] {message}", highlight=False))
    except DemoError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None

    try:
        _report(instance)
        out.print(f"IAM Steward demo ready in {instance.timings['total']:.1f} s: {instance.url}", soft_wrap=True)
        err.print("Press Ctrl+C to stop (everything is thrown away).", highlight=False)
        if browser:
            import webbrowser

            webbrowser.open(instance.url)
        # Our own handlers: a shell starts background jobs with SIGINT ignored.
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        instance.stop()
    err.print("demo stopped", highlight=False)


def _check_host(host: str) -> None:
    """A host this machine cannot listen on is the wrong --host, not a busy port."""
    import socket

    try:  # the page server is IPv4 (http.server's default)
        family, kind, proto, _, address = socket.getaddrinfo(host, 0, socket.AF_INET, socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)  # port 0: the host alone is tried
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise fail(f"--host {host!r} is not an address of this machine ({reason}); "
                   "keep the default 127.0.0.1") from None


def _report(instance) -> None:
    seeded = instance.summary.get("seeded")
    if seeded is not None:
        err.print(
            f"IAM sandbox: {seeded.accounts} accounts, {seeded.users} users "
            f"({seeded.untagged_users} without an owner tag), {seeded.keys} access keys, "
            f"{seeded.roles} roles, {seeded.groups} groups",
            highlight=False,
            soft_wrap=True,
        )
    for scan in instance.summary.get("scan", []):
        err.print(
            f"scan {scan['account']}: {scan['status']}, {scan['findings']} findings "
            f"({scan['seconds']} s)",
            highlight=False,
            soft_wrap=True,
        )
    routing = instance.summary.get("routing")
    if isinstance(routing, dict):
        shown = ", ".join(f"{k} {v}" for k, v in routing.items() if isinstance(v, int) and v)
        err.print(f"routing cycle: {shown or 'nothing to send'}", highlight=False, soft_wrap=True)
    usage = instance.summary.get("usage")
    if isinstance(usage, dict):
        err.print(f"usage: last-accessed data of {sum(usage.values())} principal(s) stored", highlight=False)
    activity = instance.summary.get("activity")
    if isinstance(activity, dict):
        err.print(
            f"activity intake: {activity.get('received')} CloudTrail event(s), {activity.get('risky')} risky",
            highlight=False,
            soft_wrap=True,
        )
    for warning in instance.warnings:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in instance.timings.items() if k != "total")
    err.print(f"start-up: {timings}", highlight=False, soft_wrap=True)
