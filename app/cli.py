"""`carbon-inclusive`: serve | migrate | seed | token | documents | export-schema | verify-ledger | expire |
checkpoint | public-key.

Exit codes: 0 success, 2 configuration or usage error (the message says which file and key), 1 other.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from app.settings import Settings, get_settings


class Terminated(Exception):
    """SIGTERM arrived."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _registry(settings: Settings, cities):  # type: ignore[no-untyped-def]
    from app.auth.tokens import ClientRegistry, load_secrets
    from app.tenants.config import parse_platform_file

    from_environment = {slug: secret.get_secret_value() for slug, secret in settings.client_secrets.items()}
    secrets = load_secrets(settings.secrets_file, from_environment)
    registry = ClientRegistry.build(cities, parse_platform_file(settings.config_dir / "platform.toml"), secrets,
                                    audience=settings.token_audience,
                                    max_lifetime_seconds=settings.token_max_lifetime_seconds)
    registry.uses_dev_secrets = not from_environment and bool(secrets)
    return registry


async def check_app_role(app_url: str) -> None:
    """Refuse to serve if the runtime login could bypass row-level security."""
    import asyncpg

    from app.db.server import asyncpg_dsn
    from app.tenants.config import ConfigError

    _, kwargs = asyncpg_dsn(app_url)
    connection = await asyncpg.connect(**kwargs)
    try:
        row = await connection.fetchrow(
            "SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        owns = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
    finally:
        await connection.close()
    if row["rolsuper"] or row["rolbypassrls"] or owns:
        raise ConfigError(f"the application login {row['name']!r} bypasses row-level security (superuser, "
                          "BYPASSRLS or table owner); point CARBON_APP_DATABASE_URL at the carbon_app role")


def prepare_database(settings: Settings):  # type: ignore[no-untyped-def]
    """Start or reach the database, create it if embedded, and migrate it to head."""
    from app.db import migrate
    from app.db.provision import set_app_role_password
    from app.db.server import ensure_database, open_database

    target = open_database(settings)
    try:
        if target.embedded is not None:
            asyncio.run(ensure_database(target.owner_url))
        migrate.upgrade(target.owner_url)
        if settings.app_database_password is not None:
            asyncio.run(set_app_role_password(target.owner_url, settings.app_database_password.get_secret_value()))
    except BaseException:
        target.close()
        raise
    return target


async def seed_database(app_url: str, cities) -> list:  # type: ignore[no-untyped-def]
    from app.db.session import NO_TENANT, Database, create_engine
    from app.tenants.service import load_cities

    database = Database(create_engine(app_url, pool_size=1))
    try:
        async with database.transaction(NO_TENANT) as session:
            return await load_cities(session, cities, now=datetime.now(UTC))
    finally:
        await database.dispose()


def _print_seed(results) -> None:  # type: ignore[no-untyped-def]
    for result in results:
        state = (f"published version {result.version} effective {result.effective_from.isoformat()}"
                 if result.published else f"unchanged (version {result.version})")
        print(f"  {result.slug}: {state}; {result.behaviors} behaviours, {result.rewards} catalogue items"
              + (f", {result.retired_rewards} retired" if result.retired_rewards else ""), file=sys.stderr)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    target = prepare_database(settings)
    target.close()
    print("migrations applied (head)", file=sys.stderr)
    return 0


def cmd_seed(settings: Settings, _: argparse.Namespace) -> int:
    from app.tenants.config import load_city_files

    cities = load_city_files(settings.config_dir)
    target = prepare_database(settings)
    try:
        _print_seed(asyncio.run(seed_database(target.app_url, cities)))
    finally:
        target.close()
    return 0


def cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from app.db.session import Database, create_engine
    from app.main import create_app
    from app.tenants.config import load_city_files

    from app.accounts.hashing import load_holder_hasher

    # SIGTERM becomes an exception from the start, so the `finally` below always stops the embedded
    # database (uvicorn also re-raises the signal it caught once it has shut down).
    signal.signal(signal.SIGTERM, _terminate)
    cities = load_city_files(settings.config_dir)  # refuse to start on a broken file, before anything else
    registry = _registry(settings, cities)
    hasher = load_holder_hasher(settings)
    if registry.uses_dev_secrets and settings.host not in ("127.0.0.1", "localhost", "::1"):
        return _fail(f"refusing to serve on {settings.host} with the development secrets of "
                     f"{settings.secrets_file}: set CARBON_ENVIRONMENT=production and CARBON_CLIENT_SECRETS")
    target = prepare_database(settings)
    try:
        asyncio.run(check_app_role(target.app_url))
        if settings.seed_on_start:
            print("loading city configuration:", file=sys.stderr)
            _print_seed(asyncio.run(seed_database(target.app_url, cities)))
        database = Database(create_engine(target.app_url, pool_size=settings.pool_size))
        app = create_app(settings, database=database, registry=registry, hasher=hasher)
        where = "embedded PostgreSQL in " + str(settings.data_dir) if target.embedded else "external PostgreSQL"
        print(
            f"\n  Carbon inclusive GraphQL API ({where})\n"
            f"  GraphiQL:  http://{settings.host}:{settings.port}/graphql\n"
            f"  A token:   .venv/bin/carbon-inclusive token wuhan-app   (clients: {', '.join(sorted(registry.clients))})\n"
            f"             then in GraphiQL's Headers tab: {{\"Authorization\": \"Bearer <token>\"}}\n"
            f"  Dashboard: http://{settings.host}:{settings.port}/dashboard   (sign in with: .venv/bin/carbon-inclusive token regulator)\n"
            f"  Stop with Ctrl-C.\n",
            file=sys.stderr, flush=True,
        )
        # What start-up built (schema, configuration, modules) lives as long as the process: out of the
        # collector's generations, the collections that request garbage sets off do not walk it again.
        gc.collect()
        gc.freeze()
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                               lifespan="on", access_log=False))
        server.run()  # returns after SIGINT/SIGTERM, once in-flight requests finish
    except (KeyboardInterrupt, Terminated):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
        target.close()
        print("stopped", file=sys.stderr)
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from app.tenants.config import load_city_files

    registry = _registry(settings, load_city_files(settings.config_dir))
    client = registry.clients.get(args.client)
    if client is None:
        return _fail(f"unknown client {args.client!r}; configured clients: {', '.join(sorted(registry.clients))}")
    try:
        token = registry.issue(args.client, args.lifetime)
    except KeyError as error:
        return _fail(str(error.args[0]))
    tenant = client.tenant_slug or "all cities"
    print(f"# development token for {client.slug} ({client.role.value}, {tenant}); "
          f"send it as 'Authorization: Bearer <token>'")
    print(token)
    return 0


def with_app_database(settings: Settings, work):  # type: ignore[no-untyped-def]
    """Run `await work(database)` on a migrated database as the app role, then close everything."""
    from app.db.session import Database, create_engine

    target = prepare_database(settings)

    async def run():  # type: ignore[no-untyped-def]
        database = Database(create_engine(target.app_url, pool_size=1))
        try:
            return await work(database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    finally:
        target.close()


def cmd_verify_ledger(settings: Settings, args: argparse.Namespace) -> int:
    """Check the ledger invariants of every city (checkpoint signatures with the platform's key); exit 1
    and list the damage if any fails."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from app.ledger.invariants import CHECKS, UnknownCity, verify_all_tenants
    from app.ledger.signing import load_signer

    if args.public_key:  # an auditor's copy of the public key: no private key needed
        try:
            public_key = load_pem_public_key(Path(args.public_key).read_bytes())
        except (OSError, ValueError) as error:
            print(f"--public-key: {error}", file=sys.stderr)
            return 2
    else:
        public_key = load_signer(settings).public
    anchors: dict[str, list[tuple[int, bytes]]] = {}
    for anchor in args.anchor or []:
        try:
            slug, number, root = anchor.split(":")
            if int(number) < 1 or len(bytes.fromhex(root)) != 32:
                raise ValueError(anchor)
            anchors.setdefault(slug, []).append((int(number), bytes.fromhex(root)))
        except ValueError:
            print(f"--anchor {anchor!r}: expected SLUG:NUMBER:ROOT, a checkpoint number from 1 and a 64-digit hex "
                  "root (as `checkpoint` prints)", file=sys.stderr)
            return 2
    try:
        report = with_app_database(settings, lambda database: verify_all_tenants(database, public_key=public_key,
                                                                                anchors=anchors))
    except UnknownCity as error:
        print(f"--anchor: {error}", file=sys.stderr)
        return 2
    failed = False
    for slug, violations in report.items():
        if violations:
            failed = True
            print(f"{slug}: {len(violations)} violation(s)")
            for violation in violations:
                print(f"  - {violation.check}: {violation.detail}")
        else:
            print(f"{slug}: ok ({len(CHECKS)} checks)")
    print("ledger FAILED verification" if failed else "ledger verified")
    return 1 if failed else 0


def cmd_expire(settings: Settings, _: argparse.Namespace) -> int:
    """Post expiry of points past their tenant's policy, city by city (idempotent)."""
    from app.ledger.expiry import expire_all

    results = with_app_database(settings, lambda database: expire_all(database, datetime.now(UTC)))
    for result in results:
        if result.cutoff is None:
            print(f"{result.tenant}: points do not expire")
        else:
            print(f"{result.tenant}: {result.points} points expired on {result.accounts} accounts checked "
                  f"(earned before {result.cutoff.isoformat()})")
    return 0


def cmd_checkpoint(settings: Settings, _: argparse.Namespace) -> int:
    """Seal every city's new ledger entries with a signed checkpoint."""
    from app.ledger.chain import checkpoint_all
    from app.ledger.signing import load_signer

    signer = load_signer(settings)
    sealed = with_app_database(settings, lambda database: checkpoint_all(database, signer, datetime.now(UTC)))
    for slug, done in sealed.items():
        print(f"{slug}: checkpoint {done.number}, {done.entries} entries, anchor {slug}:{done.number}:{done.root.hex()}"
              if done else f"{slug}: nothing new to seal")
    return 0


def cmd_public_key(settings: Settings, _: argparse.Namespace) -> int:
    """Print the platform's public key (PEM) and its key id: what verifies checkpoints and certificates."""
    from app.ledger.signing import load_signer

    signer = load_signer(settings)
    print(f"# key id {signer.key_id}")
    sys.stdout.write(signer.public_pem())
    return 0


class CityNotLoaded(Exception):
    pass


def cmd_documents(settings: Settings, args: argparse.Namespace) -> int:
    """`documents register FILE...`: validate every file first (nothing is stored if one fails), then
    store each for each city (`--city`, repeatable; default every configured city). `documents list`."""
    from pathlib import Path

    from sqlalchemy import text

    from app.db.session import NO_TENANT, TenantScope
    from app.graphql.trusted import DocumentRefused, compile_document, register_documents
    from app.tenants.config import load_city_files
    from app.tenants.models import tenant_id_for

    configured = sorted(city.slug for city in load_city_files(settings.config_dir))
    unknown = sorted(set(args.city or []) - set(configured))
    if unknown:
        return _fail(f"unknown city {', '.join(unknown)}; configured: {', '.join(configured)}")
    cities = sorted(set(args.city or configured))
    if args.action == "list":
        async def listing(database):  # type: ignore[no-untyped-def]
            rows = []
            for city in cities:
                async with database.transaction(TenantScope.for_tenant(tenant_id_for(city))) as session:
                    rows += [(city, *row) for row in (await session.execute(text(
                        "SELECT sha256, name, registered_at, registered_by FROM trusted_documents "
                        "ORDER BY registered_at, sha256"))).all()]
            return rows

        for city, sha256, name, at, by in with_app_database(settings, listing):
            print(f"{city}\tsha256:{sha256}\t{name}\t{at.isoformat()}\t{by}")
        return 0
    if not args.files:
        return _fail("name at least one FILE.graphql to register")
    documents = []
    for name in args.files:
        path = Path(name)
        try:
            # The file's exact bytes (no newline translation): the hash is what the app computes of them.
            documents.append((path, compile_document(path.read_bytes().decode("utf-8"), path.stem)))
        except OSError as error:
            return _fail(f"{path}: cannot read: {error.strerror}")
        except UnicodeDecodeError:
            return _fail(f"{path}: not UTF-8 text")
        except DocumentRefused as error:
            return _fail(f"{path}: {error}; nothing was registered")

    async def register(database):  # type: ignore[no-untyped-def]
        async with database.transaction(NO_TENANT) as session:
            for city in cities:
                async with database.transaction(TenantScope.for_tenant(tenant_id_for(city))) as probe:
                    if not (await probe.execute(text("SELECT count(*) FROM tenants"))).scalar():
                        raise CityNotLoaded(city)
            return await register_documents(session, [tenant_id_for(city) for city in cities],
                                            [document for _, document in documents], by=args.by)

    try:
        created = with_app_database(settings, register)
    except CityNotLoaded as missing:
        return _fail(f"city {missing} is not in the database yet: run `carbon-inclusive seed` (or `make run`) "
                     "first; nothing was registered")
    for path, document in documents:
        states = ", ".join(f"{city}: {'registered' if created[(tenant_id_for(city), document.sha256)] else 'already registered'}"
                           for city in cities)
        print(f"sha256:{document.sha256}  {document.name}  {path}  ({states})")
    return 0


def cmd_export_schema(_: Settings, args: argparse.Namespace) -> int:
    from app.graphql.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(sdl)
    else:
        sys.stdout.write(sdl)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbon-inclusive", description=" ".join(__doc__.split("\n\n")[0].split()))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="migrate, load the cities and serve GraphQL (CARBON_HOST/CARBON_PORT)")
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("seed", help="load or refresh the city configuration files")
    token = commands.add_parser("token", help="print a development token for a configured client")
    token.add_argument("client", help="client slug, e.g. wuhan-app, wuhan-tong, regulator")
    token.add_argument("--lifetime", type=int, default=None, metavar="SECONDS",
                       help="token lifetime (default and maximum: CARBON_TOKEN_MAX_LIFETIME_SECONDS)")
    documents = commands.add_parser("documents", help="trusted documents: register FILE.graphql... | list")
    documents.add_argument("action", choices=["register", "list"])
    documents.add_argument("files", nargs="*", metavar="FILE.graphql", help="operation documents to register")
    documents.add_argument("--city", action="append", metavar="SLUG",
                           help="register for (or list) this city only; repeatable (default: every city)")
    documents.add_argument("--by", default="cli", help="who registers them (kept with each document)")
    commands.add_parser("expire", help="post expiry of points past each city's policy (idempotent)")
    verify = commands.add_parser("verify-ledger", help="check the ledger invariants of every city (exit 1 on damage)")
    verify.add_argument("--public-key", metavar="PEM", help="verify checkpoint signatures with this public key "
                                                            "(default: the configured signing key's)")
    verify.add_argument("--anchor", action="append", metavar="SLUG:NUMBER:ROOT",
                        help="a checkpoint root kept outside the database that must still be there; repeatable")
    commands.add_parser("checkpoint", help="seal every city's new ledger entries with a signed checkpoint")
    commands.add_parser("public-key", help="print the platform's public key (verifies checkpoints, certificates)")
    export = commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    export.add_argument("--output", "-o", help="write to this file instead of standard output")
    return parser


COMMANDS = {"serve": cmd_serve, "migrate": cmd_migrate, "seed": cmd_seed, "token": cmd_token, "documents": cmd_documents,
            "export-schema": cmd_export_schema, "verify-ledger": cmd_verify_ledger, "expire": cmd_expire,
            "checkpoint": cmd_checkpoint, "public-key": cmd_public_key}


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from app.logs import configure_logging
    from app.tenants.config import ConfigError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives `documents register --city wuhan a.graphql` no place for the files after an option
    # (its FILE... list was filled, empty, before it); they are the files all the same.
    if extra and getattr(args, "command", None) == "documents" and args.action == "register" \
            and not any(item.startswith("-") for item in extra):
        args.files = [*args.files, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = get_settings()
    except ValidationError as error:
        # Never echo the input: a database URL carries its password.
        problems = "\n".join(f"  - CARBON_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                             for e in error.errors(include_input=False, include_url=False))
        return _fail(f"invalid CARBON_* environment setting:\n{problems}")
    except SettingsError as error:
        return _fail(f"invalid CARBON_* environment setting: {error}")
    configure_logging(settings.log_level, settings.log_json)
    try:
        return COMMANDS[args.command](settings, args)
    except ConfigError as error:
        return _fail(f"configuration refused; nothing was loaded or served.\n{error}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
