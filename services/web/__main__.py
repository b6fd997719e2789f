import click
import uvloop

from services.kit.config.settings import MeshSettings
from services.kit.logs import configure_logging
from services.web.server import serve


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve_command)


@cli.command("serve")
def serve_command() -> None:
    """Serve the dashboard and its session endpoint until SIGTERM/SIGINT."""
    settings = MeshSettings()
    configure_logging("web", settings.log_level)
    uvloop.run(serve(settings))


@cli.command()
def migrate() -> None:
    """Nothing to migrate: the web service keeps no data (the launcher asks every service)."""
    click.echo("web: no schema")


cli(prog_name="python -m services.web")
