"""The ``bench`` command (``python -m bench.cli`` too): the Typer app, put together from the
command modules in the order ``--help`` lists them. User errors print one line and exit with code 2,
never a traceback (``bench.cli.common.user_errors``)."""

from __future__ import annotations

import typer

from bench.cli import costs, data, doctor, protocols, run, runs, scaffold

app = typer.Typer(
    help="Benchmark of SAM adapters and 3D networks on BTCV under one protocol (TP-Mamba, MICCAI 2024).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(run.run)
app.command()(runs.report)
app.command()(runs.score)
app.command()(runs.status)
app.command()(runs.predict)
data_app = typer.Typer(help="Validate a BTCV folder or write the built-in synthetic abdomen.", no_args_is_help=True)
data_app.command("check")(data.data_check)
data_app.command("synth")(data.data_synth)
app.add_typer(data_app, name="data")
splits_app = typer.Typer(help="Protocols: which cases each draw trains and tests on.", no_args_is_help=True)
splits_app.command("make")(protocols.splits_make)
app.add_typer(splits_app, name="splits")
app.command("list")(costs.list_)
app.command()(costs.flops)
app.command()(costs.speed)
app.command()(doctor.doctor)
app.command("new-method")(scaffold.new_method)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
