"""A throw-away PostgreSQL server for tests: Debian's own server binaries, a private data directory,
a free loopback port, one login role with a password.

``initdb`` and ``postgres`` refuse to run as root; when the tests run as root the server runs as the
``postgres`` system user (``subprocess``'s ``user=``), in a temporary directory that user owns.
Durability is switched off (``--no-sync``, ``fsync=off``): the cluster lives for one test module.

    with PostgresServer() as pg:
        pg.create_database("optuna")
        url = pg.url(db="optuna")  # postgresql+psycopg2://robo:...@127.0.0.1:<port>/optuna
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg2  # type: ignore[import-untyped]
import psycopg2.extensions  # type: ignore[import-untyped]
from psycopg2 import sql

from trader_runtime.errors import RoboTraderError

# where Debian's postgresql-<major> packages put the server binaries (not on PATH by default)
DEBIAN_PG_LIB = Path("/usr/lib/postgresql")
# the system user Debian's package creates: under root, the server runs as it
SERVER_USER = "postgres"
SUPERUSER = "postgres"  # the cluster's bootstrap superuser, reachable only via the unix socket
_BIND_FAILURE = re.compile(r"could not (bind|create listen socket)|address already in use", re.I)


class PostgresServerError(RoboTraderError):
    """The test PostgreSQL server cannot be found, started or reached."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: ``$PG_BIN_DIR``, else the
    newest ``/usr/lib/postgresql/<major>/bin``, else wherever ``initdb`` is on PATH."""
    candidates: list[Path] = []
    if env_dir := os.environ.get("PG_BIN_DIR"):
        candidates.append(Path(env_dir))
    if DEBIAN_PG_LIB.is_dir():
        majors = [p for p in DEBIAN_PG_LIB.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(majors, key=lambda p: int(p.name), reverse=True)]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresServerError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; `make postgres` installs "
        "Debian's postgresql package, or set PG_BIN_DIR"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:<free port> and on a
    unix socket inside that directory, with one password-protected login role owning ``db``.

    A context manager: ``__exit__`` stops the server (``pg_ctl stop -m fast``) and removes the
    directory, also when the body raised; an ``atexit`` hook covers an interpreter that exits
    without unwinding.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        user: str = "robo",
        db: str = "robo",
        password: str | None = None,
        bin_dir: Path | None = None,
        start_timeout_s: int = 60,
        start_attempts: int = 5,
    ) -> None:
        self.user = user
        self.db = db
        self.password = password or secrets.token_urlsafe(18)
        self.bin_dir = bin_dir
        self.start_timeout_s = start_timeout_s
        self.start_attempts = start_attempts
        self._port: int | None = None
        self._root: Path | None = None
        self._run_as: pwd.struct_passwd | None = None

    # connection details
    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresServerError("the PostgreSQL server is not running")
        return self._port

    @property
    def root(self) -> Path:
        if self._root is None:
            raise PostgresServerError("the PostgreSQL server is not running")
        return self._root

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        """libpq key/value connection string of the login role over TCP."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.db}"
        )

    def url(self, driver: str = "postgresql+psycopg2", db: str | None = None) -> str:
        """SQLAlchemy-style URL of ``db`` (default: the role's own database) over TCP."""
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{db or self.db}"

    def connect(self, db: str | None = None) -> psycopg2.extensions.connection:
        """A psycopg2 connection as the login role (password over TCP, like every client)."""
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db or self.db,
            connect_timeout=10,
        )

    def query(
        self, statement: str, params: Sequence[Any] = (), *, db: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of one read-only ``statement`` in ``db``, on a connection closed afterwards."""
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, tuple(params))
                return list(cur.fetchall())
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by the login role; returns ``name``."""
        self._admin(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(*map(sql.Identifier, (name, self.user)))
        )
        return name

    # life cycle
    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """initdb into a fresh temporary directory, start the server, create the role and db."""
        if self._root is not None:
            raise PostgresServerError("the PostgreSQL server is already running")
        bin_dir = self.bin_dir or find_bin_dir()
        self._run_as = _server_account()
        self._root = Path(tempfile.mkdtemp(prefix="robo-pg-", dir=_base_dir(self._run_as)))
        atexit.register(self.stop)
        try:
            self.socket_dir.mkdir()
            if self._run_as is not None:
                for path in (self.root, self.socket_dir):
                    os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
            self._initdb(bin_dir)
            self._start_on_free_port(bin_dir)
            self._admin(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)
                )
            )
            self.create_database(self.db)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown; SIGQUIT if that fails) and remove its directory."""
        root, self._root = self._root, None
        atexit.unregister(self.stop)
        if root is None:
            return
        try:
            data = root / "data"
            if (data / "postmaster.pid").exists():
                bin_dir = self.bin_dir or find_bin_dir()
                done = self._run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "30",
                        "stop",
                    ],
                    root,
                    check=False,
                )
                if done.returncode != 0:
                    _kill_postmaster(data / "postmaster.pid")
        finally:
            self._port = None
            shutil.rmtree(root, ignore_errors=True)

    # internals
    def _initdb(self, bin_dir: Path) -> None:
        self._run(
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(self.root / "data"),
                "--username",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            self.root,
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        with (self.root / "data" / "postgresql.conf").open("a") as conf:
            conf.write("\n# robo-trader test server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_on_free_port(self, bin_dir: Path) -> None:
        for _ in range(self.start_attempts):
            port = free_port()
            done = self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.root / "data"),
                    "-l",
                    str(self.log_path),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(self.start_timeout_s),
                    "start",
                ],
                self.root,
                check=False,
            )
            if done.returncode == 0:
                self._port = port
                return
            log = self.log_path.read_text() if self.log_path.exists() else ""
            if not _BIND_FAILURE.search(log):
                raise PostgresServerError(f"postgres did not start:\n{done.stdout}\n{log[-2000:]}")
            self.log_path.unlink()  # the port was taken in between: try another one
        raise PostgresServerError(f"no free port after {self.start_attempts} attempts")

    def _admin(self, statement: sql.Composable) -> None:
        """Run one statement as the superuser over the unix socket (trust), outside a transaction."""
        conn = psycopg2.connect(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname="postgres"
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def _run(
        self, argv: Sequence[str], cwd: Path, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the server account; output to a file (a daemonised postgres must
        not hold a pipe of ours open)."""
        as_user: dict[str, Any] = {}
        if self._run_as is not None:
            as_user = {
                "user": self._run_as.pw_uid,
                "group": self._run_as.pw_gid,
                "extra_groups": [],
            }
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=self.start_timeout_s + 30,
                check=False,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
                **as_user,
            )
            out.seek(0)
            output = out.read()
        if check and done.returncode != 0:
            raise PostgresServerError(f"{Path(argv[0]).name} failed ({done.returncode}):\n{output}")
        return subprocess.CompletedProcess(argv, done.returncode, output, "")


def _server_account() -> pwd.struct_passwd | None:
    """The account the server must run as: ``postgres`` under root, else the current user (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise PostgresServerError(
            f"running as root and there is no '{SERVER_USER}' system user to run PostgreSQL as"
        ) from exc


def _base_dir(run_as: pwd.struct_passwd | None) -> Path:
    """Where the cluster's directory goes: the temp dir, unless the server account could not reach
    it or the unix socket path would grow past its limit (about 100 bytes); then /tmp."""
    base = Path(tempfile.gettempdir()).resolve()
    reachable = run_as is None or all(p.stat().st_mode & 0o001 for p in (base, *base.parents))
    return base if reachable and len(str(base)) <= 40 else Path("/tmp")


def _kill_postmaster(pid_file: Path) -> None:
    """Immediate shutdown of a postmaster that ignored ``pg_ctl stop``."""
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        pass
