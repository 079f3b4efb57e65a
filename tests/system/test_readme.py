"""The README, top to bottom, as a person runs it (issue 18).

Every ```sh block of README.md runs in the README's order, in one persistent bash in a
pseudo-terminal (the person's second terminal, opened in the checkout), typed one line at a
time; blocks that start the server (a line ``make serve``) run in another one, the server's
terminal: the first starts it, each later one is typed there after a Ctrl-C, as the README
says. There is one server, from `make serve`, whose console is read as a person reads it: the
first start's admin password comes from there. Where a person must act, the test does what the
README says, the way a person would (``ACTIONS``): copying a token from My Tokens is done in
Chromium, git's and the client's prompts are answered at the prompt. Every command must end
with status 0 (the shell has ``pipefail``), and print no traceback and no JSON ``"error"``;
a failure names the README block and the command.

The liberties this machine forces, and only these:
- the port: 8000 may be in use on a shared machine, so the server runs with
  `make serve PORT=N`, as the README offers, and the person's terminal starts with
  ``export TOKENSMITH_URL=http://127.0.0.1:N``, as the README offers ("if your server is
  elsewhere"); for the same reason the README's https://tokens.example.com (the public URL of
  the sign-in example) is that address;
- a checkout of its own: `make serve` runs in a temporary folder holding this checkout's
  Makefile, pyproject.toml, README.md, src and .venv (symbolic links), so that ./var and the
  examples' files stay out of the checkout and no second .venv is made; `make -n serve` must
  plan no installation there (run `make test`, which brings .venv up to date, first);
- the person's machine: a HOME of its own, with a git identity for commits (GIT_AUTHOR_NAME…),
  no system keyring (the client keeps its token in its 0600 file), and Java told that this HOME
  is the home (MAVEN_OPTS=-Duser.home: Java reads it from /etc/passwd, not from $HOME);
- Maven Central is out of reach: the settings.xml copied from My Applications gets a mirror of
  central to Debian's /usr/share/maven-repo (RECIPES);
- the hotfix file "at hand": a small zip written into the folder before the block publishing it;
- the Nuxeo CLI the README has you install with npm: the one `make test` installs from its lock
  file (tests/support/nuxeo-cli), run by a `nuxeo` on the PATH that points its analytics request
  (to the internet, on every command) at a loopback port where nothing listens
  (tests/support/nuxeo_cli.py); the mirror the README has you add to ~/.m2/settings.xml, added;
- Okta is the project's real OpenID provider for tests, node-oidc-provider
  (tests/support/oidc_provider.py), on a loopback port: the README's issuer
  (https://acme.okta.com) is replaced by its address; its client id and client secret, and the
  subject of the person who links admin, are the README's own;
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pexpect
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import unavailable
from tests.support import nuxeo_cli
from tests.support.ledger import remember, watch
from tests.support.oidc_provider import OidcProvider, OidcProviderUnavailable
from tests.support.ports import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
CHECKOUT_FILES = ("Makefile", "pyproject.toml", "README.md", "src", "distributions", ".venv")
PLACEHOLDER = "tks_...paste-yours-here..."
TOKEN = re.compile(r"tks_[0-9A-Za-z]{38}")
BANNER_PASSWORD = re.compile(r"First start: created user 'admin' with this password:\s+(\S+)")
# The README's Okta values, which node-oidc-provider is given as they are.
OKTA_ISSUER, OKTA_CLIENT_ID, OKTA_CLIENT_SECRET = ("https://acme.okta.com", "0oa1b2c3d4e5f6g7h8i9", "the client secret")
ADMIN_SUBJECT = "00u9f8e7d6c5b4a3z2y1"  # the README's `users link admin --subject`
PUBLIC_URL_EXAMPLE = "https://tokens.example.com"
PROMPT = re.compile(r"readme-done:(\d+)> ")
CONTINUATION = "readme-more> "
COMMAND_TIMEOUT = 300


# --- the README's blocks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    number: int
    heading: str
    text: str

    def __str__(self) -> str:
        first = next((line for line in self.text.splitlines() if line.strip() and not line.startswith("#")), "")
        return f"README block {self.number} under “{self.heading}” ({first[:70]})"

    @property
    def starts_the_server(self) -> bool:
        return any(re.match(r"make serve\b", line) for line in self.text.splitlines())


def readme_blocks() -> list[Block]:
    """Every ```sh block, in order, with the heading it is under."""
    blocks, heading = [], ""
    for match in re.finditer(r"^(#{2,3}) ([^\n]+)$|^```sh\n(.*?)^```", README.read_text(), re.M | re.S):
        if match.group(2):
            heading = match.group(2)
        else:
            blocks.append(Block(len(blocks) + 1, heading, match.group(3)))
    return blocks


# --- terminals -------------------------------------------------------------------------------------


class CommandFailed(AssertionError):
    pass


class Terminal:
    """An interactive bash in a pseudo-terminal: lines typed one at a time, each command's status
    read from the prompt (PS1 shows $?), its output kept."""

    def __init__(self, name: str, cwd: Path, env: dict[str, str], secrets: list[str]) -> None:
        self.name, self.secrets = name, secrets
        self.child = pexpect.spawn(
            "bash",
            ["--norc", "--noprofile", "--noediting", "-i"],
            cwd=str(cwd),
            env=env,
            encoding="utf-8",
            codec_errors="replace",
            timeout=60,
            dimensions=(50, 250),
        )
        self.transcript = ""
        if os.environ.get("TOKENSMITH_README_TRANSCRIPTS"):  # a folder: each terminal's screen, live
            self.child.logfile_read = open(Path(os.environ["TOKENSMITH_README_TRANSCRIPTS"]) / f"{name}.txt", "w")  # noqa: SIM115
        self.child.sendline(f"PS1='readme-done:$?> '; PS2='{CONTINUATION}'; set -o pipefail")
        self.child.expect(PROMPT)

    def masked(self, text: str) -> str:
        """What may be shown in a failure: no token, no password."""
        text = TOKEN.sub("tks_…", text)
        for secret in self.secrets:
            text = text.replace(secret, "…secret…")
        return text

    def tail(self, characters: int = 3000) -> str:
        return self.masked(self.transcript[-characters:])

    def command(self, lines: list[str], pending: list[tuple[str, Callable[[], str]]]) -> tuple[int, str]:
        """Type one command, ``lines[0]``, and the lines after it as bash asks for them (a
        continuation: those typed are taken off ``lines``); answer the prompts it shows with the
        first of ``pending`` (each answered one is taken off); its status and output."""
        output = self.type(lines.pop(0))
        rest = lines
        while True:
            expected = [PROMPT, re.escape(CONTINUATION), *(prompt for prompt, _answer in pending[:1])]
            index = self.child.expect(expected, timeout=COMMAND_TIMEOUT)
            output += self.child.before + self.child.after
            if index == 0:
                self.transcript += output
                return int(self.child.match.group(1)), output
            if index == 1:
                if not rest:
                    raise CommandFailed(f"bash waits for more after:\n{self.masked(output)}")
                output += self.type(rest.pop(0))
            else:
                _prompt, answer = pending.pop(0)
                self.child.sendline(answer())

    def type(self, line: str) -> str:
        """One line typed, up to its echo: what the terminal then shows comes from the command
        (a prompt in the line itself, like a comment's "asks Username:", is not one)."""
        self.child.sendline(line)
        self.child.expect_exact(line, timeout=30)
        return self.child.before + self.child.after

    def start(self, line: str, ready: str) -> str:
        """Type a command that keeps running (the server); what it printed until ``ready``."""
        self.child.sendline(line)
        self.child.expect(re.escape(ready), timeout=180)
        started = self.child.before + self.child.after
        self.transcript += started
        return started

    def interrupt(self) -> str:
        """Ctrl-C, as a person stops the server; what it printed since it started."""
        self.child.sendintr()
        self.child.expect(PROMPT, timeout=60)
        stopped = self.child.before
        self.transcript += stopped + self.child.after
        return stopped

    def close(self) -> None:
        if not self.child.isalive():
            return
        self.child.sendline("exit")
        try:
            self.child.expect(pexpect.EOF, timeout=20)
        except pexpect.TIMEOUT:
            # What still runs in the foreground is the job this test started: its group, by its id.
            with contextlib.suppress(OSError):
                os.killpg(os.tcgetpgrp(self.child.child_fd), signal.SIGTERM)
            self.child.terminate(force=True)


# --- the walk --------------------------------------------------------------------------------------


@dataclass
class Walk:
    """One person's afternoon with the README: their two terminals, their browser, the server."""

    folder: Path
    home: Path
    port: int
    idp: OidcProvider
    browser: Browser
    console_log: Path
    secrets: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    consoles: list[str] = field(default_factory=list)
    server_running: bool = False
    context: BrowserContext | None = None
    shell: Terminal | None = None
    server: Terminal | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keep(self, secret: str) -> str:
        self.secrets.append(remember(secret))
        return secret

    def page(self) -> Page:
        if self.context is None:
            self.context = self.browser.new_context(
                base_url=self.url, permissions=["clipboard-read", "clipboard-write"]
            )
            self.context.set_default_timeout(15_000)
        return self.context.pages[0] if self.context.pages else self.context.new_page()

    def substituted(self, text: str) -> str:
        """The block as this machine must run it (the module's docstring lists why)."""
        text = text.replace(PLACEHOLDER, self.values.get("README", PLACEHOLDER))
        text = text.replace(PUBLIC_URL_EXAMPLE, self.url).replace(OKTA_ISSUER, self.idp.issuer)
        return re.sub(r"^make serve\b", f"make serve PORT={self.port}", text, flags=re.M)

    # --- the server's terminal -------------------------------------------------------------------

    def run_in_the_server_terminal(self, block: Block) -> None:
        if self.server_running:
            self.stop_the_server()
        for line in self.substituted(block.text).splitlines():
            if re.match(r"make serve\b", line):
                console = self.server.start(line, "Uvicorn running on")
                self.consoles.append(console)
                self.wait_until_answering(block)
                self.server_running = True
            elif line.strip() and not line.startswith("#"):
                status, output = self.server.command([line], [])
                if status != 0:
                    raise CommandFailed(f"{block}: `{line}` ended with status {status}:\n{self.server.masked(output)}")

    def stop_the_server(self) -> None:
        self.consoles[-1] += self.server.interrupt()
        self.server_running = False

    def wait_until_answering(self, block: Block) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise CommandFailed(f"{block}: the server does not answer on {self.url}:\n{self.server.tail()}")

    # --- the person's terminal ---------------------------------------------------------------------

    def run_in_the_shell(self, block: Block, answers: list[tuple[str, Callable[[], str]]]) -> str:
        printed = ""
        pending = list(answers)
        lines = self.substituted(block.text).splitlines()
        while lines:
            if not lines[0].strip() or lines[0].startswith("#"):
                lines.pop(0)
                continue
            line = lines[0]
            status, output = self.shell.command(lines, pending)
            printed += output
            problem = (
                ("Traceback" in output and "traceback")
                or ('"error":' in output and "an error answer")
                or ("}{" in output and "answers run together")
                or (re.search(r"[}\]]readme-done:", output) and "an answer without its final newline")
            )
            if status != 0 or problem:
                raise CommandFailed(
                    f"{block}: `{self.shell.masked(line)}` "
                    f"{f'ended with status {status}' if status else f'printed {problem}'}:\n"
                    f"{self.shell.masked(output[-3000:])}"
                )
        return printed


# --- what a person does around some blocks ---------------------------------------------------------


def sign_in_and_copy_a_token(walk: Walk, console: str) -> None:
    """The README: sign in as admin with the password the first start printed, create `README`
    on My Tokens and copy it."""
    password = BANNER_PASSWORD.search(console)
    assert password, f"the first start printed no admin password:\n{console[-2000:]}"
    walk.keep(password.group(1))
    page = walk.page()
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password.group(1))
    page.get_by_role("button", name="Sign in").click()
    walk.values["README"] = create_on_my_tokens(walk, "README")


def create_on_my_tokens(walk: Walk, name: str) -> str:
    page = walk.page()
    page.goto("/tokens")
    page.get_by_label("Token name").fill(name)
    page.get_by_role("button", name="Create token").click()
    return walk.keep(page.get_by_test_id("new-token").inner_text().strip())


def settings_from_my_applications(walk: Walk) -> None:
    """The README: My Applications' Fill in a token, the file copied and saved as
    ~/.m2/settings.xml; with Debian's mirror of central, which this machine needs."""
    page = walk.page()
    page.goto("/applications")
    page.get_by_role("button", name="Fill in a token for the settings.xml of acme-contracts").click()
    walk.keep(page.get_by_test_id("new-token").inner_text().strip())
    page.get_by_role("button", name="Copy the settings.xml for acme-contracts").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    shown = next(block for block in re.findall(r"```xml\n(.*?)```", README.read_text(), re.S) if "<settings>" in block)
    like_the_readme = re.sub(
        r"<password>[^<]*</password>", "<password>PASTE-A-PERSONAL-ACCESS-TOKEN-HERE</password>", copied
    ).replace("<username>admin</username>", "<username>alice</username>")
    assert " ".join(like_the_readme.replace(walk.url, "http://127.0.0.1:8000").split()) == " ".join(shown.split()), (
        "the settings.xml of My Applications is not the README's"
    )
    (walk.home / ".m2").mkdir(exist_ok=True)
    (walk.home / ".m2" / "settings.xml").write_text(
        copied.replace(
            "<settings>",
            "<settings>\n  <mirrors><mirror><id>debian</id><mirrorOf>central</mirrorOf>"
            "<url>file:///usr/share/maven-repo</url></mirror></mirrors>",
            1,
        )
    )


def a_hotfix_at_hand(walk: Walk) -> None:
    (walk.folder / "hotfix-12.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)


def two_tokens_for_the_laptop(walk: Walk) -> None:
    """The README: create `Laptop` (for the client's login) and `Old laptop` on My Tokens."""
    walk.values["Laptop"] = create_on_my_tokens(walk, "Laptop")
    create_on_my_tokens(walk, "Old laptop")


def the_mirror_in_settings_xml(walk: Walk) -> None:
    """The README: the mirror of the repository nuxeo-studio, added to ~/.m2/settings.xml."""
    mirror = next(
        block
        for block in re.findall(r"```xml\n(.*?)```", README.read_text(), re.S)
        if "<mirrorOf>nuxeo-studio" in block
    )
    settings = walk.home / ".m2" / "settings.xml"
    entry = (
        mirror.strip().removeprefix("<mirrors>").removesuffix("</mirrors>").replace("http://127.0.0.1:8000", walk.url)
    )
    settings.write_text(settings.read_text().replace("</mirrors>", f"{entry}</mirrors>", 1))


def the_nuxeo_cli_at_its_prompts(walk: Walk) -> list[tuple[str, Callable[[], str]]]:
    return [
        ("NOS Username:", lambda: "admin"),
        ("NOS Token:", lambda: walk.values["README"]),
        ("Studio Project:", lambda: "acme-contracts"),
        ("settings.xml file accordingly", lambda: "Y"),
        (r"Overwrite \S*settings\.xml\?", lambda: "y"),
        ("Branch to release:", lambda: "master"),
        ("Version to release:", lambda: "3"),
        (r"Overwrite pom\.xml\?", lambda: "y"),
        ("Constant package:", lambda: "com.acme.app"),
        ("Constant class name:", lambda: "StudioConstant"),
        (r"Are you sure to unlink\?", lambda: "y"),
    ]


def sign_in_with_okta_as_admin(walk: Walk) -> None:
    """The README: Sign in with Okta, as the person linked to admin."""
    context = walk.browser.new_context(base_url=walk.url)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto("/login")
        expect(page.get_by_label("Password")).to_have_count(0)  # passwords are off now
        page.get_by_role("link", name="Sign in with Okta").click()
        page.locator("input[name=login]").fill("the.person")
        page.locator("input[name=password]").fill("what they type at Okta")
        page.get_by_role("button", name="Sign-in").click()
        page.get_by_role("button", name="Continue").click()  # the provider's consent page
        expect(page.get_by_text("Signed in as admin")).to_be_attached()
        expect(page.get_by_role("link", name="Credentials")).to_be_visible()  # an administrator's tab
    finally:
        context.close()


@dataclass(frozen=True)
class Action:
    """What a person does for the README block holding ``marker`` (a regular expression)."""

    marker: str
    before: Callable[[Walk], None] | None = None
    answers: Callable[[Walk], list[tuple[str, Callable[[], str]]]] = lambda walk: []
    after: Callable[[Walk], None] | None = None
    skip: str = ""
    optional: bool = False  # for a block the README may have (an install command), or not


ACTIONS = [
    Action(r"^make test\b", skip="this run is the suite"),
    Action(
        r"Password for 'http",
        answers=lambda walk: [
            (re.escape(f"Username for '{walk.url}': "), lambda: "admin"),
            (re.escape(f"Password for 'http://admin@127.0.0.1:{walk.port}': "), lambda: walk.values["README"]),
        ],
    ),
    Action(r"^mvn dependency:get", before=settings_from_my_applications),
    Action(r"packages publish hotfix-12\.zip", before=a_hotfix_at_hand),
    Action(
        r"^tokensmith login\b",
        before=two_tokens_for_the_laptop,
        answers=lambda walk: [
            ("Username: ", lambda: "admin"),
            ("Token: ", lambda: walk.values["Laptop"]),
            (r"Revoke token “Old laptop” \(tks_…\w{4}\)\? \[y/N\]: ", lambda: "y"),
        ],
    ),
    Action(r"users link admin\b", after=sign_in_with_okta_as_admin),
    Action(r"^nuxeo studio link\b", before=the_mirror_in_settings_xml, answers=the_nuxeo_cli_at_its_prompts),
]


def action_for(block: Block) -> Action | None:
    found = [action for action in ACTIONS if re.search(action.marker, block.text, re.M)]
    assert len(found) <= 1, f"{block} matches several actions: {[action.marker for action in found]}"
    return found[0] if found else None


# --- the test --------------------------------------------------------------------------------------


def person_env(home: Path) -> dict[str, str]:
    """A person's environment: their HOME, no setting of Tokensmith's, no make of an outer run,
    the PATH without this run's virtualenv (the README puts the client on it), with ~/bin (where
    `nuxeo` is)."""
    drop = ("TOKENSMITH_", "GIT_", "PYTHON_KEYRING", "MAKE", "MFLAGS")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop) and key != "VIRTUAL_ENV"}
    path = [str(home / "bin")] + [
        entry for entry in env["PATH"].split(os.pathsep) if Path(entry) != Path(sys.executable).parent
    ]
    return {
        **env,
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada Reader",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada Reader",
        "GIT_COMMITTER_EMAIL": "ada@example.test",
        "MAVEN_OPTS": f"-Duser.home={home}",
        "NO_COLOR": "1",
    }


def a_checkout(folder: Path) -> None:
    folder.mkdir()
    for name in CHECKOUT_FILES:
        (folder / name).symlink_to(ROOT / name)
    plan = subprocess.run(
        ["make", "-n", "serve"], cwd=folder, env=person_env(folder.parent), capture_output=True, text=True, timeout=60
    )
    if "pip install" in plan.stdout:
        pytest.fail(
            f"{ROOT / '.venv'} is older than pyproject.toml: `make serve` would install it again. "
            "Run `make test` (which brings it up to date) first."
        )


@pytest.fixture(scope="module")
def walk(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    base = tmp_path_factory.mktemp("readme")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    idp = OidcProvider(
        base / "okta",
        redirect_uris=f"{url}/login/oidc/callback",
        post_logout_redirect_uris=f"{url}/login",
        client_id=OKTA_CLIENT_ID,
        name="readme-okta",
        accounts={"the.person": {"sub": ADMIN_SUBJECT, "email": "the.person@example.test"}},
    )
    idp.client_secret = remember(OKTA_CLIENT_SECRET)
    try:
        idp.start()
    except OidcProviderUnavailable as error:
        unavailable(str(error))
    if (
        not shutil.which("mvn")
        or not Path("/usr/share/maven-repo/org/apache/maven/plugins/maven-dependency-plugin").is_dir()
    ):
        unavailable("mvn with Debian's maven-dependency-plugin is not installed")
    if reason := nuxeo_cli.missing():
        unavailable(reason)
    a_checkout(base / "checkout")
    home = base / "home"
    home.mkdir()
    nuxeo_cli.on_the_path(home / "bin")
    walk = Walk(base / "checkout", home, port, idp, chromium, watch(base / "readme-server.console.log"))
    env = person_env(home)
    walk.server = Terminal("server", walk.folder, env, walk.secrets)
    walk.shell = Terminal("person", walk.folder, env, walk.secrets)
    try:
        status, _ = walk.shell.command([f"export TOKENSMITH_URL={url}"], [])
        assert status == 0
        yield walk
    finally:
        if walk.server_running:
            walk.stop_the_server()
        walk.console_log.write_text("".join(walk.consoles).replace("\r\n", "\n"))
        for terminal in (walk.shell, walk.server):
            terminal.close()
        if walk.context is not None:
            walk.context.close()
        idp.stop()


@pytest.mark.timeout(900)
def test_the_readme_runs_top_to_bottom_as_written(walk: Walk) -> None:
    blocks = readme_blocks()
    used = set()
    for block in blocks:
        action = action_for(block)
        if action is not None:
            used.add(action.marker)
            if action.skip:
                continue
        if block.starts_the_server:
            first = not walk.consoles
            walk.run_in_the_server_terminal(block)
            if first:
                sign_in_and_copy_a_token(walk, walk.consoles[0])
            continue
        if action is not None and action.before:
            action.before(walk)
        printed = walk.run_in_the_shell(block, action.answers(walk) if action else [])
        walk.values[f"block {block.number}"] = printed
        if action is not None and action.after:
            action.after(walk)
    unused = {action.marker for action in ACTIONS if not action.optional} - used
    assert not unused, f"actions for blocks the README no longer has: {sorted(unused)}"
    walk.stop_the_server()

    # What the person saw on the way, block by block.
    shown = {block.number: walk.values.get(f"block {block.number}", "") for block in blocks}
    curl = shown[next(block.number for block in blocks if PLACEHOLDER in block.text)]
    assert curl.count('"username":"admin"') == 2 and curl.count('"authenticated_with":"token"') == 2
    assert '"name":"README"' in curl
    everything = "".join(shown.values())
    assert "\n204\r\n" in everything  # the revocation by id
    assert "admin with token “README”" in everything  # the CI block, with the token nothing rotated
    for said in (
        "Logged in to",
        "admin with token “Laptop”",
        "Revoked token “Old laptop”",
        "Rotated token “Laptop”",
        "git now asks tokensmith",
        "tokensmith-studio for admin",
        "Linked",
        "Released acme-contracts",
        "Registered instance",
        f"Logged out of {walk.url}",
        "is a whole Tokensmith backup",  # Backups: create, verify, and a restore into a folder of its own
        "Replayed the revocation journal var/revocations",
    ):
        assert said in everything, said
    assert (walk.home / "acme-contracts" / ".git").is_dir() and (
        walk.home / "acme-laptop" / ".tokensmith.json"
    ).exists()
    assert (walk.folder / "downloaded-hotfix-12.zip").read_bytes() == (walk.folder / "hotfix-12.zip").read_bytes()
    jar = walk.home / ".m2" / "repository" / "com" / "acme" / "studio" / "acme-contracts" / "0.1.0"
    assert (jar / "acme-contracts-0.1.0.jar").exists()
    assert '"active":false' in everything.replace(" ", "")  # grace, deactivated through SCIM
    # Coming from Nuxeo Online Services: the reference's addresses, its CLI, application tokens.
    for said in (
        '"mavenCoordinates":"com.acme.studio:acme-contracts:0.1.1"',
        '{"groupId":"nuxeo-studio","artifactId":"acme-contracts","version":"0.1.1"}',
        "nuxeo-studio:acme-contracts:jar:0.1.1:test",
        "We released a new version 0.1.2 of your Studio project",
        "Your NOS account has been unlink.",
        '"name":"nightly-build on device ci-7"',
        '"scopes":["maven:read"]',
        "Revoked the application token “nightly-build on device ci-7”",
    ):
        assert said in everything, said
    # Tokens found elsewhere: whose a token is, revoked by value; the sweep, with nothing set.
    for said in (
        "Looked up 1 value(s): 1 token(s) of this server.",
        "Pasted in a ticket",
        "revoked now on",
        "1 revoked now (each owner told)",
        "Swept: no unused tokens revoked (TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS is not set)",
    ):
        assert said in everything, said
    app = walk.home / "acme-app"
    assert "<groupId>nuxeo-studio</groupId>" not in (app / "pom.xml").read_text()  # unlinked: its dependency is gone
    assert (
        'BUNDLE_NAME = "studio.extensions.acme-contracts"'
        in (app / "src/main/java/com/acme/app/StudioConstant.java").read_text()
    )
    assert re.search(
        r"<id>nuxeo-studio</id>\s*<username>admin</username>", (walk.home / ".m2" / "settings.xml").read_text()
    )

    # The starts were quiet: the banner, uvicorn's lines, nothing else (issue 18: a SAWarning).
    first_start = walk.consoles[0].split("Uvicorn running on")[0]
    for noise in ("Warning", "warning", "contextlib", "Traceback"):
        assert noise not in first_start, walk.server.masked(first_start)
    assert all("Traceback" not in console for console in walk.consoles)

    # Secrets the examples made, for the check that none reached a log.
    status, _ = walk.shell.command(
        ['printf "%s\\n" "$SECOND" "$LEAKED" "$INSTANCE_KEY" "$FOUND" > ~/.for-the-ledger'], []
    )
    assert status == 0
    for secret in (walk.home / ".for-the-ledger").read_text().split():
        remember(secret)
    for secret in TOKEN.findall(everything):
        remember(secret)
    remember((walk.folder / "scim-secret").read_text().strip())
    remember("a long password")
    remember("a new long password")
    for key in (walk.home / ".config" / "tokensmith" / "instances").iterdir():
        remember(key.read_text().strip().split(":", 1)[1])
    remember((walk.home / ".m2" / "settings.xml").read_text().split("<password>")[1].split("</password>")[0])
