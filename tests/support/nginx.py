"""Debian's nginx on a loopback port, run with a configuration of our own in a folder of ours
(nothing in /etc is read or touched), stopped by the process id we started.

``proxy`` puts it in front of Tokensmith instances the way docs/deployment.md describes (minus
TLS); ``serve_folder`` serves static files (the download benchmark's reference).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.processes import stop_process


class NginxUnavailable(RuntimeError):
    pass


# What the access log records of each request: when it ended (epoch seconds), how long it took,
# what it was, and which instance answered ("a, b" when nginx passed it on to a second).
LOG_FORMAT = "$msec $request_time $request_method $uri $status $body_bytes_sent $upstream_addr|$upstream_status"

PROXY = """
        proxy_pass http://tokensmith;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # An instance that refuses the connection, resets it or does not answer: the request
        # goes to the next one -- unless it is a POST (or PATCH) already sent, which nginx never
        # repeats (no "non_idempotent"): a release or a push must not happen twice.
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 3;
        proxy_connect_timeout 2s;
        proxy_read_timeout 300s;"""


@dataclass(frozen=True)
class LoggedRequest:
    ended: float
    seconds: float
    method: str
    path: str
    status: int
    upstreams: list[str]
    upstream_statuses: list[str]
    bytes_sent: int

    @property
    def started(self) -> float:
        return self.ended - self.seconds


class Nginx:
    def __init__(self, workdir: Path, *, prefix: list[str] | None = None, log_requests: bool = True) -> None:
        """``prefix`` goes before the command (``taskset -c 0``)."""
        self.workdir = workdir
        self.prefix = prefix or []
        self.log_requests = log_requests
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    def serve_folder(self, root: Path) -> Nginx:
        self.site = f"server {{ listen 127.0.0.1:{self.port}; root {root}; }}"
        return self

    def git_http_backend(self, project_root: Path, fastcgi_socket: Path, users: Path) -> Nginx:
        """``git http-backend`` as CGI under ``/git/``, through fcgiwrap on ``fastcgi_socket``
        (``FcgiWrap``): git's own smart HTTP server reading ``project_root``, behind HTTP Basic
        authentication against ``users`` (an htpasswd file: ``htpasswd_line``), as its manual
        sets it up."""
        self.site = f"""
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 0;
        location ~ ^/git(/.*)$ {{
            auth_basic "git";
            auth_basic_user_file {users};
            fastcgi_pass unix:{fastcgi_socket};
            fastcgi_param SCRIPT_FILENAME {git_http_backend()};
            fastcgi_param GIT_PROJECT_ROOT {project_root};
            fastcgi_param GIT_HTTP_EXPORT_ALL 1;
            fastcgi_param PATH_INFO $1;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
            fastcgi_param GIT_PROTOCOL $http_git_protocol;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_buffering off;
            fastcgi_request_buffering off;
        }}
    }}"""
        return self

    def proxy(self, ports: list[int], *, git_rate: str | None = None) -> Nginx:
        """In front of the instances on ``ports``, round robin; ``git_rate`` (like ``2m``, bytes a
        second) slows the packs clones and fetches receive, to keep a clone in flight a while."""
        servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in ports)
        # nginx applies limit_rate only to buffered answers: buffered, then, but never to disk,
        # so that the instance still sends the pack as slowly as the client gets it.
        slow = (
            f"""
        location ~ ^/git/.+/git-upload-pack$ {{{PROXY}
            proxy_max_temp_file_size 0;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 64k;
            limit_rate {git_rate};
        }}"""
            if git_rate
            else ""
        )
        self.site = f"""
    upstream tokensmith {{
{servers}
        keepalive 64;
        # Below uvicorn's 5 s: nginx never sends a request on a connection the instance is
        # closing for idleness (a POST there would be lost, not passed on).
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 0;  # the instances hold bodies to their own limits
        location / {{{PROXY}
        }}
        location /git/ {{{PROXY}
            proxy_request_buffering off;  # a push streams through
            proxy_buffering off;          # and so does a clone
        }}{slow}
    }}"""
        return self

    def start(self, timeout: float = 10) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise NginxUnavailable("nginx is not installed (apt-get install nginx)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        temp = {name: self.workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        logging = (
            f"log_format requests '{LOG_FORMAT}'; access_log {self.access_log} requests;"
            if self.log_requests
            else "access_log off;"
        )
        config = self.workdir / "nginx.conf"
        config.write_text(
            "daemon off; master_process off; worker_processes 1;\n"
            f"pid {self.workdir}/nginx.pid; error_log {self.error_log} warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{ {logging} sendfile on; tcp_nopush on;\n"
            f"  client_body_temp_path {temp['body']}; proxy_temp_path {temp['proxy']};\n"
            f"  fastcgi_temp_path {temp['fastcgi']}; uwsgi_temp_path {temp['uwsgi']}; scgi_temp_path {temp['scgi']};\n"
            f"{self.site}\n}}\n"
        )
        self.process = subprocess.Popen(
            [*self.prefix, binary, "-p", str(self.workdir), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NginxUnavailable(f"nginx exited: {self.errors()}")
            try:
                httpx.get(self.url + "/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise NginxUnavailable(f"nginx did not answer within {timeout}s: {self.errors()}")

    def stop(self) -> None:
        stop_process(self.process)

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def requests(self) -> list[LoggedRequest]:
        """What the access log holds so far, oldest first."""
        found = []
        for line in self.access_log.read_text().splitlines():
            ended, seconds, method, path, status, sent, upstream = line.split(" ", 6)
            addresses, _, statuses = upstream.partition("|")
            found.append(
                LoggedRequest(
                    float(ended),
                    float(seconds),
                    method,
                    path,
                    int(status),
                    addresses.replace(" : ", ", ").split(", "),
                    statuses.replace(" : ", ", ").split(", "),
                    int(sent),
                )
            )
        return found


def htpasswd_line(username: str, password: str) -> str:
    """An htpasswd entry nginx reads: salted SHA-1 ({SSHA}), never the password itself."""
    salt = os.urandom(8)
    return (
        f"{username}:{{SSHA}}"
        + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()
        + "\n"
    )


def git_http_backend() -> str:
    """Where git keeps its CGI program."""
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    return str(Path(exec_path) / "git-http-backend")


class FcgiWrap:
    """Debian's fcgiwrap (a FastCGI server that runs CGI programs) on a Unix socket of ours,
    stopped by the process id we started."""

    def __init__(self, workdir: Path, *, prefix: list[str] | None = None) -> None:
        self.socket = workdir / "fcgiwrap.sock"
        self.prefix = prefix or []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> FcgiWrap:
        binary = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"
        if not Path(binary).exists():
            raise NginxUnavailable("fcgiwrap is not installed (apt-get install fcgiwrap)")
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [*self.prefix, binary, "-s", f"unix:{self.socket}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise NginxUnavailable("fcgiwrap did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        stop_process(self.process)
