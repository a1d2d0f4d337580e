"""A real OpenLDAP slapd (Debian's) on loopback, loaded with Toolforge-shaped tool accounts.

The directory is built offline with ``slapadd`` (fast, even for thousands of entries), then
``slapd`` runs in the foreground on a free port. Plain searches are capped (``sizelimit``)
as production directories are, so a reader that does not page cannot see every account.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.loopback import free_port
from tests.processes import start

SUFFIX = "dc=wikimedia,dc=org"
TOOLS_BASE = f"ou=people,ou=servicegroups,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "imagegate-test-secret"
PAGE_LIMIT = 500  # entries a search gets without paging

CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {root}/slapd.pid
argsfile {root}/slapd.args

database mdb
maxsize 268435456
suffix "{suffix}"
rootdn "{admin}"
rootpw {password}
directory {root}/db
limits * size.soft={limit} size.hard={limit} size.prtotal=unlimited
access to * by * read
"""


def tool_uid(index: int) -> int:
    return 50000 + index


def tool_name(index: int) -> str:
    return f"t{index:05d}-bot"


def ldif(tools: int) -> str:
    """The suffix, the servicegroups tree, ``tools`` tool accounts, plus people and oddities."""
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: wikimedia\no: Wikimedia\n",
        f"dn: ou=servicegroups,{SUFFIX}\nobjectClass: organizationalUnit\nou: servicegroups\n",
        f"dn: {TOOLS_BASE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
    ]
    for index in range(tools):
        name = tool_name(index)
        parts.append(
            f"dn: uid=tools.{name},{TOOLS_BASE}\nobjectClass: account\nobjectClass: posixAccount\n"
            f"uid: tools.{name}\ncn: tools.{name}\nuidNumber: {tool_uid(index)}\ngidNumber: {tool_uid(index)}\n"
            f"homeDirectory: /data/project/{name}\nloginShell: /bin/bash\n"
        )
    # a person (not a tool account), in another subtree: never a namespace
    parts.append(
        f"dn: uid=alice,ou=people,{SUFFIX}\nobjectClass: account\nobjectClass: posixAccount\nuid: alice\n"
        "cn: alice\nuidNumber: 1001\ngidNumber: 1001\nhomeDirectory: /home/alice\n"
    )
    # a tool account with a second cn value first, and one that would run as root
    parts.append(
        f"dn: uid=tools.multi,{TOOLS_BASE}\nobjectClass: account\nobjectClass: posixAccount\nuid: tools.multi\n"
        "cn: Multi tool\ncn: tools.multi\nuidNumber: 49999\ngidNumber: 49998\nhomeDirectory: /data/project/multi\n"
    )
    parts.append(
        f"dn: uid=tools.rooty,{TOOLS_BASE}\nobjectClass: account\nobjectClass: posixAccount\nuid: tools.rooty\n"
        "cn: tools.rooty\nuidNumber: 0\ngidNumber: 0\nhomeDirectory: /data/project/rooty\n"
    )
    # two accounts for one tool (which is its uid?), and a name no tool can have: both reported
    for rdn, uid in (("uid=tools.twice", 49990), ("cn=tools.twice", 49991)):
        parts.append(
            f"dn: {rdn},{TOOLS_BASE}\nobjectClass: account\nobjectClass: posixAccount\nuid: tools.twice\n"
            f"cn: tools.twice\nuidNumber: {uid}\ngidNumber: {uid}\nhomeDirectory: /data/project/twice\n"
        )
    parts.append(
        f"dn: uid=tools.Bad_Name,{TOOLS_BASE}\nobjectClass: account\nobjectClass: posixAccount\n"
        "uid: tools.Bad_Name\ncn: tools.Bad_Name\nuidNumber: 49980\ngidNumber: 49980\nhomeDirectory: /x\n"
    )
    return "\n".join(parts)


@dataclass(frozen=True)
class Slapd:
    url: str
    port: int
    root: Path


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"slapd exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"slapd not listening in {timeout}s:\n{log.read_text(errors='replace')}")


@contextmanager
def run_slapd(root: Path, tools: int) -> Iterator[Slapd]:
    """slapd on 127.0.0.1 with ``tools`` tool accounts; always stopped on exit."""
    (root / "db").mkdir(parents=True)
    config = root / "slapd.conf"
    config.write_text(
        CONFIG.format(root=root, suffix=SUFFIX, admin=ADMIN_DN, password=ADMIN_PASSWORD, limit=PAGE_LIMIT)
    )
    data = root / "data.ldif"
    data.write_text(ldif(tools))
    subprocess.run(["slapadd", "-q", "-f", str(config), "-l", str(data)], check=True, capture_output=True)
    port = free_port()
    log = root / "slapd.log"
    url = f"ldap://127.0.0.1:{port}"
    with log.open("wb") as out:
        # -d 0: stay in the foreground (no daemon to lose track of), log nothing at debug level
        process = start(["slapd", "-d", "0", "-h", f"{url}/", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, log)
        yield Slapd(url, port, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
